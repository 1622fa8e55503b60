//! CPU time of the platform's processes over the measured window, from `/proc/<pid>/stat`
//! (`utime + stime`, all threads, in clock ticks of 10 ms), and of the whole machine from
//! `/proc/stat`: which service is busiest, and how close to the 2-core bound the run was.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Clock ticks per second of `/proc` CPU times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS: f64 = 100.0;

/// A watched process: its name (`shop-1`), its service (`shop`) and pid.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub service: String,
    pub pid: u32,
}

impl Watched {
    /// `name=pid` or `name:service=pid`; without a service, the name up to a `-<digits>`
    /// suffix (`shop-2` → `shop`). Services named `infra-*` (database, bus and cache servers)
    /// are measured but never the busiest.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, pid) = s.rsplit_once('=').ok_or_else(|| format!("--watch {s:?}: expected name=pid"))?;
        let pid: u32 = pid.parse().map_err(|_| format!("--watch {s:?}: pid is not a number"))?;
        let (name, service) = match name.split_once(':') {
            Some((n, svc)) => (n.to_owned(), svc.to_owned()),
            None => {
                let svc = match name.rsplit_once('-') {
                    Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
                    _ => name,
                };
                (name.to_owned(), svc.to_owned())
            }
        };
        Ok(Self { name, service, pid })
    }
}

/// Processes found by their command name (`/proc/<pid>/comm`), such as PostgreSQL's
/// backends, which come and go with the connection pools: measured as one service.
#[derive(Debug, Clone)]
pub struct ByName {
    pub comm: String,
    pub service: String,
}

impl ByName {
    /// `comm=service`, e.g. `postgres=infra-postgres`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (comm, service) = s.split_once('=').ok_or_else(|| format!("--watch-comm {s:?}: expected comm=service"))?;
        Ok(Self { comm: comm.to_owned(), service: service.to_owned() })
    }
}

/// `pid → (command, utime + stime)` of every process.
fn all_processes() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        if let Some(t) = process_ticks(&pid.to_string()) {
            out.insert(pid, (comm.trim_end().to_owned(), t));
        }
    }
    out
}

/// CPU ticks each process used between two scans (all of it for one that started between).
fn used(before: &BTreeMap<u32, (String, u64)>, after: &BTreeMap<u32, (String, u64)>) -> BTreeMap<u32, (String, u64)> {
    after.iter().map(|(pid, (comm, t))| (*pid, (comm.clone(), t.saturating_sub(before.get(pid).map_or(0, |b| b.1))))).collect()
}

/// `utime + stime` of a process in ticks (`None` when it is gone).
pub fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ... utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `(busy, total)` ticks of all CPUs together.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Readings at the start of the measured window.
pub struct Sample {
    procs: Vec<(Watched, Option<u64>)>,
    by_name: Vec<ByName>,
    all: BTreeMap<u32, (String, u64)>,
    me: Option<u64>,
    machine: Option<(u64, u64)>,
}

pub fn sample(watched: &[Watched], by_name: &[ByName]) -> Sample {
    Sample {
        procs: watched.iter().map(|w| (w.clone(), process_ticks(&w.pid.to_string()))).collect(),
        by_name: by_name.to_vec(),
        all: all_processes(),
        me: process_ticks("self"),
        machine: machine_ticks(),
    }
}

impl Sample {
    /// CPU seconds per process and per service since this sample, the load generator's own,
    /// the machine's busy share, and the busiest service.
    pub fn since(&self, secs: f64) -> Value {
        let mut per_process = Map::new();
        let mut per_service: BTreeMap<String, f64> = BTreeMap::new();
        for (w, before) in &self.procs {
            let after = process_ticks(&w.pid.to_string());
            let cpu = match (before, after) {
                (Some(b), Some(a)) => Some(a.saturating_sub(*b) as f64 / TICKS),
                _ => None,
            };
            per_process.insert(w.name.clone(), json!({"service": w.service, "pid": w.pid, "cpu_s": cpu}));
            *per_service.entry(w.service.clone()).or_default() += cpu.unwrap_or(0.0);
        }
        // Processes by name: those that started during the window count in full; those that
        // ended during it are lost (connection pools keep PostgreSQL's backends for the run).
        let delta = used(&self.all, &all_processes());
        for b in &self.by_name {
            let mine: Vec<u64> = delta.values().filter(|(c, _)| *c == b.comm).map(|(_, t)| *t).collect();
            let cpu = mine.iter().sum::<u64>() as f64 / TICKS;
            per_process.insert(format!("{}*", b.comm), json!({"service": b.service, "processes": mine.len(), "cpu_s": cpu}));
            *per_service.entry(b.service.clone()).or_default() += cpu;
        }
        // Everything else that ran meanwhile, by command: other people's work on a shared
        // machine shows here.
        let own_pid = std::process::id();
        let mut others: BTreeMap<String, u64> = BTreeMap::new();
        for (pid, (comm, t)) in &delta {
            let watched = self.procs.iter().any(|(w, _)| w.pid == *pid) || self.by_name.iter().any(|b| b.comm == *comm);
            if !watched && *pid != own_pid && *t > 0 {
                *others.entry(comm.clone()).or_default() += t;
            }
        }
        let mut others: Vec<(String, u64)> = others.into_iter().collect();
        others.sort_by_key(|o| std::cmp::Reverse(o.1));
        let others_total = others.iter().map(|(_, t)| *t).sum::<u64>() as f64 / TICKS;
        // The platform's own services only: not `up` (all of them in one process) nor the
        // servers it runs on (`infra-*`).
        let busiest = per_service
            .iter()
            .filter(|(s, _)| *s != "up" && !s.starts_with("infra-"))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(s, _)| s.clone());
        let watched: f64 = per_service.values().sum();
        let me = match (self.me, process_ticks("self")) {
            (Some(b), Some(a)) => a.saturating_sub(b) as f64 / TICKS,
            _ => 0.0,
        };
        let machine = match (self.machine, machine_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => 0.0,
        };
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let busy = machine * secs * cores() as f64;
        json!({
            "window_s": round(secs),
            "cores": cores(),
            "machine_busy_share": round(machine),
            "machine_busy_cpu_s": round(busy),
            // What no process accounts for: the kernel's own work (loopback networking in
            // softirq), processes that ended within the window.
            "unattributed_cpu_s": round(busy - watched - me - others_total),
            // Processes neither watched nor the load generator, by command (the ten busiest).
            "other_processes_cpu_s": round(others_total),
            "other_processes": others.iter().take(10).map(|(c, t)| (c.clone(), json!(round(*t as f64 / TICKS)))).collect::<Map<String, Value>>(),
            "loadgen_cpu_s": round(me),
            "per_service_cpu_s": per_service.iter().map(|(k, v)| (k.clone(), json!(round(*v)))).collect::<Map<String, Value>>(),
            "per_process": per_process,
            "busiest_service": busiest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_names_give_services() {
        let w = Watched::parse("shop-2=1234").unwrap();
        assert_eq!((w.name.as_str(), w.service.as_str(), w.pid), ("shop-2", "shop", 1234));
        let w = Watched::parse("up=99").unwrap();
        assert_eq!(w.service, "up");
        let w = Watched::parse("gw:gateway=7").unwrap();
        assert_eq!((w.name.as_str(), w.service.as_str()), ("gw", "gateway"));
        assert!(Watched::parse("shop").is_err());
    }

    #[test]
    fn own_process_and_machine_are_readable() {
        assert!(process_ticks("self").is_some());
        let (busy, total) = machine_ticks().unwrap();
        assert!(busy <= total && total > 0);
    }
}
