-- Sample schema for docker-compose.yml. walrus creates its publication and slot itself.
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    total      numeric(12, 2) NOT NULL,
    status     text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text,
    password_hash text
);

-- The transactional outbox (see docs/outbox.md): insert the event and delete it in the same
-- transaction; walrus publishes the insert from the WAL.
CREATE TABLE outbox (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregatetype text NOT NULL,
    aggregateid   text NOT NULL,
    type          text NOT NULL,
    payload       jsonb
);

INSERT INTO orders (customer, total) VALUES ('grace', 10.50), ('linus', 99.00);
