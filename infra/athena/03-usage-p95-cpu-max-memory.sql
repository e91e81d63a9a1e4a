-- p95 CPU (cores) and max memory of one job over its samples. Parameters: job, first day, last day (the job is required: samples is partitioned by an injected job key).
SELECT
  job,
  COUNT(DISTINCT run_id) AS runs,
  COUNT(*) AS samples,
  ROUND(approx_percentile(cpu_cores, 0.95), 3) AS cpu_p95_cores,
  ROUND(MAX(cpu_cores), 3) AS cpu_max_cores,
  MAX(mem_bytes) AS mem_max_bytes,
  ROUND(CAST(MAX(mem_bytes) AS DOUBLE) / 1073741824, 3) AS mem_max_gib
FROM samples
WHERE job = ?
  AND dt BETWEEN ? AND ?
GROUP BY job
