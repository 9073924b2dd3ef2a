-- Metrics: counters kept by triggers in the transaction that changes what they count, so a scrape reads a few
-- rows instead of aggregating millions (GROUP BY over a million requests took 1.5 s; see bench/metrics_scrape.py).
-- Every process and the CLI see the same numbers: they are in the database. storage/metrics_queries.py reads them.
--
-- metric                    a            b          c            value
-- requests                  action       status     decided_by   requests now in that state ('' = not decided)
-- triggers                  kind                                 triggers that fired (a request may fire several)
-- decision_seconds_bucket   upper bound                          people's decisions that took at most that long
--                                                                 and more than the next lower bound (not cumulative)
-- decision_seconds_sum                                           seconds from created to decided, summed
-- escalations                                                    requests escalated
-- votes                     verdict      channel                 votes ('slack' when the vote carries a Slack user
--                                                                 id, else 'cli_or_api': the CLI and the HTTP API
--                                                                 record no channel)
-- notifications             notifier     result                  'delivered' (notified events, by notifier name) or
--                                                                 'dead' (notify_failed events: a notifier gave up)
-- model_inferences          model        version                 inferences recorded
-- model_errors              model        version                 of which errors
-- model_latency_ms_sum      model        version                 their latencies, summed, in milliseconds
CREATE TABLE metric_counts (
    metric TEXT NOT NULL,
    a      TEXT NOT NULL DEFAULT '',
    b      TEXT NOT NULL DEFAULT '',
    c      TEXT NOT NULL DEFAULT '',
    value  REAL NOT NULL,
    PRIMARY KEY (metric, a, b, c)
) WITHOUT ROWID;

-- Pending requests per priority: a count over the pending entries only, however long the history.
CREATE INDEX requests_pending_priority ON requests (status, priority) WHERE status = 'pending';

CREATE TRIGGER metrics_request_created AFTER INSERT ON requests
BEGIN
    INSERT INTO metric_counts (metric, a, b, c, value)
    VALUES ('requests', NEW.action, NEW.status, coalesce(NEW.decided_by, ''), 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
    INSERT INTO metric_counts (metric, a, b, c, value)
    SELECT 'triggers', coalesce(json_extract(t.value, '$.kind'), ''), '', '', count(*)
      FROM json_each(NEW.triggers) AS t WHERE true GROUP BY 2
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + excluded.value;
END;

CREATE TRIGGER metrics_request_state AFTER UPDATE OF status ON requests
WHEN NEW.status != OLD.status
BEGIN
    UPDATE metric_counts SET value = value - 1
     WHERE metric = 'requests' AND a = OLD.action AND b = OLD.status AND c = coalesce(OLD.decided_by, '');
    INSERT INTO metric_counts (metric, a, b, c, value)
    VALUES ('requests', NEW.action, NEW.status, coalesce(NEW.decided_by, ''), 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
    INSERT INTO metric_counts (metric, a, b, c, value)
    SELECT 'decision_seconds_bucket',
           CASE WHEN d <= 10 THEN '10' WHEN d <= 30 THEN '30' WHEN d <= 60 THEN '60' WHEN d <= 300 THEN '300'
                WHEN d <= 900 THEN '900' WHEN d <= 1800 THEN '1800' WHEN d <= 3600 THEN '3600'
                WHEN d <= 7200 THEN '7200' WHEN d <= 14400 THEN '14400' WHEN d <= 28800 THEN '28800'
                WHEN d <= 86400 THEN '86400' ELSE '+Inf' END, '', '', 1
      FROM (SELECT round(max(0.0, (julianday(NEW.decided_at) - julianday(NEW.created_at)) * 86400.0), 3) AS d)
     WHERE NEW.decided_by = 'human'
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
    INSERT INTO metric_counts (metric, a, b, c, value)
    SELECT 'decision_seconds_sum', '', '', '', round(max(0.0, (julianday(NEW.decided_at) - julianday(NEW.created_at)) * 86400.0), 3)
     WHERE NEW.decided_by = 'human'
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + excluded.value;
END;

CREATE TRIGGER metrics_request_escalated AFTER UPDATE OF escalated_at ON requests
WHEN OLD.escalated_at IS NULL AND NEW.escalated_at IS NOT NULL
BEGIN
    INSERT INTO metric_counts (metric, value) VALUES ('escalations', 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER metrics_vote AFTER INSERT ON votes
BEGIN
    INSERT INTO metric_counts (metric, a, b, value)
    VALUES ('votes', NEW.verdict, CASE WHEN NEW.reviewer_ids != '[]' THEN 'slack' ELSE 'cli_or_api' END, 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER metrics_notified AFTER INSERT ON events
WHEN NEW.kind = 'notified'
BEGIN
    INSERT INTO metric_counts (metric, a, b, value)
    VALUES ('notifications', coalesce(json_extract(NEW.data, '$.notifier'), ''), 'delivered', 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER metrics_notify_failed AFTER INSERT ON events
WHEN NEW.kind = 'notify_failed'
BEGIN
    INSERT INTO metric_counts (metric, a, b, value)
    VALUES ('notifications', coalesce(json_extract(NEW.data, '$.notifier'), ''), 'dead', 1)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + 1;
END;

CREATE TRIGGER metrics_model_minute_added AFTER INSERT ON model_minutes
BEGIN
    INSERT INTO metric_counts (metric, a, b, value)
    VALUES ('model_inferences', NEW.model, NEW.version, NEW.count),
           ('model_errors', NEW.model, NEW.version, NEW.errors),
           ('model_latency_ms_sum', NEW.model, NEW.version, NEW.latency_sum)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + excluded.value;
END;

CREATE TRIGGER metrics_model_minute_grown AFTER UPDATE ON model_minutes
BEGIN
    INSERT INTO metric_counts (metric, a, b, value)
    VALUES ('model_inferences', NEW.model, NEW.version, NEW.count - OLD.count),
           ('model_errors', NEW.model, NEW.version, NEW.errors - OLD.errors),
           ('model_latency_ms_sum', NEW.model, NEW.version, NEW.latency_sum - OLD.latency_sum)
    ON CONFLICT (metric, a, b, c) DO UPDATE SET value = value + excluded.value;
END;

-- What was there before this migration.
INSERT INTO metric_counts (metric, a, b, c, value)
SELECT 'requests', action, status, coalesce(decided_by, ''), count(*) FROM requests WHERE true GROUP BY 2, 3, 4;

INSERT INTO metric_counts (metric, a, b, c, value)
SELECT 'triggers', coalesce(json_extract(t.value, '$.kind'), ''), '', '', count(*)
  FROM requests AS r, json_each(r.triggers) AS t WHERE true GROUP BY 2;

INSERT INTO metric_counts (metric, a, b, c, value)
SELECT 'decision_seconds_bucket',
       CASE WHEN d <= 10 THEN '10' WHEN d <= 30 THEN '30' WHEN d <= 60 THEN '60' WHEN d <= 300 THEN '300'
            WHEN d <= 900 THEN '900' WHEN d <= 1800 THEN '1800' WHEN d <= 3600 THEN '3600'
            WHEN d <= 7200 THEN '7200' WHEN d <= 14400 THEN '14400' WHEN d <= 28800 THEN '28800'
            WHEN d <= 86400 THEN '86400' ELSE '+Inf' END, '', '', count(*)
  FROM (SELECT round(max(0.0, (julianday(decided_at) - julianday(created_at)) * 86400.0), 3) AS d
          FROM requests WHERE decided_by = 'human')
 WHERE true GROUP BY 2;

INSERT INTO metric_counts (metric, value)
SELECT 'decision_seconds_sum', sum(round(max(0.0, (julianday(decided_at) - julianday(created_at)) * 86400.0), 3))
  FROM requests WHERE decided_by = 'human' HAVING count(*) > 0;

INSERT INTO metric_counts (metric, value)
SELECT 'escalations', count(*) FROM requests WHERE escalated_at IS NOT NULL HAVING count(*) > 0;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'votes', verdict, CASE WHEN reviewer_ids != '[]' THEN 'slack' ELSE 'cli_or_api' END, count(*)
  FROM votes WHERE true GROUP BY 2, 3;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'notifications', coalesce(json_extract(data, '$.notifier'), ''), 'delivered', count(*)
  FROM events WHERE kind = 'notified' GROUP BY 2;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'notifications', coalesce(json_extract(data, '$.notifier'), ''), 'dead', count(*)
  FROM events WHERE kind = 'notify_failed' GROUP BY 2;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'model_inferences', model, version, sum(count) FROM model_minutes WHERE true GROUP BY 2, 3;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'model_errors', model, version, sum(errors) FROM model_minutes WHERE true GROUP BY 2, 3;

INSERT INTO metric_counts (metric, a, b, value)
SELECT 'model_latency_ms_sum', model, version, sum(latency_sum) FROM model_minutes WHERE true GROUP BY 2, 3;
