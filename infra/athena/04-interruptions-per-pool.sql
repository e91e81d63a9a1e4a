-- Interruptions per capacity pool (instance type, AZ, market): attempts, interruptions and rate. Parameters: first day, last day.
SELECT
  placed.instance_type AS instance_type,
  placed.az AS az,
  placed.market AS market,
  COUNT(*) AS attempts,
  SUM(CASE WHEN status = 'interrupted' THEN 1 ELSE 0 END) AS interruptions,
  ROUND(CAST(SUM(CASE WHEN status = 'interrupted' THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*), 4) AS interruption_rate
FROM run_records
WHERE dt BETWEEN ? AND ?
  AND placed IS NOT NULL
GROUP BY placed.instance_type, placed.az, placed.market
ORDER BY interruptions DESC, attempts DESC, instance_type, az
