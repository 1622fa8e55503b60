-- wrk script for bench/haproxy.sh: every request carries the next token of a file (one per
-- line) as `Authorization: Bearer`. Each wrk thread walks its own share of the file
-- (thread k of T takes lines k, k+T, k+2T, ...) from a random place, so no two threads send
-- the same token and a thread sends a token again only after it has sent all of its share.
--
--   wrk -t2 -c64 -d6s --latency -s bench/haproxy/tokens.lua URL -- TOKEN_FILE WRK_THREADS

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local all = {}
  for line in io.lines(args[1]) do
    if line ~= "" then all[#all + 1] = line end
  end
  -- `id` is set by setup(); `nthreads` is how many threads wrk started.
  local nthreads = tonumber(args[2]) or 1
  mine = {}
  for i = id + 1, #all, nthreads do
    mine[#mine + 1] = "Bearer " .. all[i]
  end
  if #mine == 0 then mine[1] = "Bearer " .. all[1] end
  math.randomseed(os.time() * 16 + id)
  pos = math.random(#mine)
  headers = {}
end

function request()
  pos = pos + 1
  if pos > #mine then pos = 1 end
  headers["Authorization"] = mine[pos]
  return wrk.format(nil, nil, headers)
end
