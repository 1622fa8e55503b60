-- Event-carried copy of identity's users: enough to address an email. Never read from
-- identity's tables; kept current from identity.user.registered.v1.
create table users (
    id text primary key,
    email text not null,
    full_name text not null,
    updated_at bigint not null
);

-- In-app notifications. One per user and event, whatever the bus redelivers.
create table notifications (
    id text primary key,
    user_id text not null,
    event_id text not null,
    event_type text not null,
    title text not null,
    body text not null,
    created_at bigint not null,
    read_at bigint,
    unique (user_id, event_id)
);
create index notifications_user_id on notifications (user_id, id);
create index notifications_user_created on notifications (user_id, created_at);
create index notifications_unread on notifications (user_id) where read_at is null;

-- Channel choices per user: an exact event type, or '*' for every event.
-- channels is a comma-separated list such as 'in_app,email'.
create table preferences (
    user_id text not null,
    event_type text not null,
    channels text not null,
    updated_at bigint not null,
    primary key (user_id, event_type)
);

create table webhooks (
    id text primary key,
    user_id text not null,
    url text not null,
    secret text not null,
    created_at bigint not null
);
create index webhooks_user on webhooks (user_id);

-- Outbound messages (email, webhook, sms, push), durable so retries survive restarts.
-- status: queued -> sent | failed. A worker claims a row by moving next_attempt_at forward
-- (a lease) with a conditional update, so replicas never send one row at the same time.
create table deliveries (
    id text primary key,
    notification_id text not null references notifications (id) on delete cascade,
    user_id text not null,
    channel text not null,
    target text not null,
    subject text,
    body text not null,
    status text not null,
    attempts bigint not null,
    next_attempt_at bigint not null,
    last_error text,
    created_at bigint not null,
    updated_at bigint not null,
    unique (notification_id, channel, target)
);
create index deliveries_due on deliveries (next_attempt_at) where status = 'queued';
