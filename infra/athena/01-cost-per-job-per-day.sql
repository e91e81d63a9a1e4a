-- Cost per job per day (UTC): runs, attempts, instance-hours and USD. Parameters: first day, last day (YYYY-MM-DD).
SELECT
  job,
  dt,
  COUNT(DISTINCT run_id) AS runs,
  COUNT(*) AS attempts,
  ROUND(SUM(cost_usd), 6) AS cost_usd,
  ROUND(SUM(CAST(summary.duration_s AS DOUBLE)) / 3600, 4) AS instance_hours
FROM run_records
WHERE dt BETWEEN ? AND ?
GROUP BY job, dt
ORDER BY dt, job
