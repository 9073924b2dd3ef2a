-- History queries that filter on status and action, or agent and action (permission prompts), stay
-- a page of index reads even when few rows match.
CREATE INDEX requests_status_action_created ON requests (status, action, created_at DESC, id DESC);
CREATE INDEX requests_agent_action_created ON requests (agent_id, action, created_at DESC, id DESC);
