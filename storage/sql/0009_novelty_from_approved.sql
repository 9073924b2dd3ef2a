-- An action becomes known for an agent (anomaly detection's novelty) only when a request for it is approved.
-- Versions 1-7 recorded it when a request was created, so a person's "no" (or the agent's own cancellation)
-- was undone by asking again. Rebuild the table from the approved requests; the store now writes it on approval.
DELETE FROM agent_actions;

INSERT OR IGNORE INTO agent_actions (agent_id, action)
SELECT coalesce(agent_id, ''), action FROM requests WHERE status = 'approved';
