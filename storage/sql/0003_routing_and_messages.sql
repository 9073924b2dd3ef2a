-- Where each request is discussed (a Slack channel) and who may vote there; the messages that show it.

ALTER TABLE requests ADD COLUMN channel TEXT;
ALTER TABLE requests ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';  -- JSON array of Slack user/group ids

-- One message per request and notifier, so a retry updates the message instead of posting it again.
CREATE TABLE message_refs (
    request_id   TEXT NOT NULL REFERENCES requests (id),
    notifier     TEXT NOT NULL,
    channel      TEXT NOT NULL,
    ts           TEXT NOT NULL,
    votes_posted INTEGER NOT NULL DEFAULT 0,   -- votes already replied in the message's thread
    PRIMARY KEY (request_id, notifier)
) WITHOUT ROWID;
