-- Long waits that survive a dropped connection: storage/sql/0017_resume_streams.sql on PostgreSQL (the comments
-- there say what each column is for).
CREATE TABLE resume_streams (
    key ctext PRIMARY KEY,
    principal ctext,
    tool ctext NOT NULL,
    request ctext NOT NULL,
    owner ctext NOT NULL,
    alive_at ctext,
    created_at ctext NOT NULL,
    response ctext
);

CREATE INDEX resume_streams_created ON resume_streams (created_at);
