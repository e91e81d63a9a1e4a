-- Requested vs used per job (waste): vCPU-hours and GiB-hours asked for vs used, and the USD spent on idle vCPUs. Parameters: first day, last day.
SELECT
  job,
  COUNT(*) AS attempts,
  ROUND(SUM(CAST(requested_vcpu AS DOUBLE) * summary.duration_s) / 3600, 4) AS requested_vcpu_hours,
  ROUND(SUM(CAST(summary.cpu.avg AS DOUBLE) * summary.duration_s) / 3600, 4) AS used_vcpu_hours,
  ROUND(1 - SUM(CAST(summary.cpu.avg AS DOUBLE) * summary.duration_s)
        / SUM(CAST(requested_vcpu AS DOUBLE) * summary.duration_s), 4) AS cpu_waste_ratio,
  ROUND(SUM(CAST(requested_memory_bytes AS DOUBLE) / 1073741824 * summary.duration_s) / 3600, 4) AS requested_gib_hours,
  ROUND(SUM(CAST(summary.mem_max_bytes AS DOUBLE) / 1073741824 * summary.duration_s) / 3600, 4) AS peak_gib_hours,
  ROUND(1 - SUM(CAST(summary.mem_max_bytes AS DOUBLE) * summary.duration_s)
        / SUM(CAST(requested_memory_bytes AS DOUBLE) * summary.duration_s), 4) AS mem_waste_ratio,
  ROUND(SUM(cost_usd * (1 - LEAST(1.0, CAST(summary.cpu.avg AS DOUBLE) / requested_vcpu))), 6) AS idle_cpu_cost_usd
FROM run_records
WHERE dt BETWEEN ? AND ?
  AND summary IS NOT NULL
  AND requested_vcpu > 0
  AND requested_memory_bytes > 0
  AND summary.duration_s > 0
GROUP BY job
ORDER BY idle_cpu_cost_usd DESC, job
