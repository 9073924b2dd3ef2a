-- What the out-of-distribution profile reads (`RequestQuery.folded_action`): the newest approved requests of an action
-- whatever its case, as rules compare actions and the anomaly history keeps them since 0018. An action is ASCII
-- (`policy.ACTION_PATTERN`), where Unicode case folding (storage/folding.py) is `lower()`, so no stored column is
-- needed: the requests are found by this index on the expression the stores compare.
CREATE INDEX requests_status_folded_created ON requests (status, lower(action), created_at DESC, id DESC);
