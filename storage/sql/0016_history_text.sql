-- History text search (RequestQuery.text: words in the action, summary or agent id) without reading every row:
-- a trigram full-text index of those three fields, kept by triggers. A search of 3 characters or more first
-- asks it which requests may match, then checks each candidate exactly (ASCII case only, as before): the index
-- folds case more widely, so it may offer more candidates than match, never fewer. Its own rows carry the
-- request id (not requests' rowid, which a VACUUM may renumber).
CREATE VIRTUAL TABLE requests_text USING fts5(id UNINDEXED, action, summary, agent, tokenize = 'trigram');

INSERT INTO requests_text (id, action, summary, agent)
SELECT id, action, summary, coalesce(agent_id, '') FROM requests;

CREATE TRIGGER requests_text_insert AFTER INSERT ON requests
BEGIN
    INSERT INTO requests_text (id, action, summary, agent)
    VALUES (new.id, new.action, new.summary, coalesce(new.agent_id, ''));
END;

-- signoff never changes these fields (a trigger refuses) nor deletes requests; an edit behind its back (which
-- `audit verify` reports) still leaves the index true, at the cost of a scan of it
CREATE TRIGGER requests_text_update AFTER UPDATE OF id, action, summary, agent_id ON requests
BEGIN
    DELETE FROM requests_text WHERE id = old.id;
    INSERT INTO requests_text (id, action, summary, agent)
    VALUES (new.id, new.action, new.summary, coalesce(new.agent_id, ''));
END;

CREATE TRIGGER requests_text_delete AFTER DELETE ON requests
BEGIN
    DELETE FROM requests_text WHERE id = old.id;
END;
