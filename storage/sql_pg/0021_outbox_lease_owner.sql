-- Who holds an outbox row's lease: storage/sql/0021_outbox_lease_owner.sql on PostgreSQL (the comments there say
-- what it is for).
ALTER TABLE outbox ADD COLUMN lease_owner ctext;
