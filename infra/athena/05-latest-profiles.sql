-- Job profiles from the latest DynamoDB export (Athena only: reads the export layout). No parameters.
WITH latest AS (
  SELECT MAX(regexp_extract("$path", 'AWSDynamoDB/([^/]+)/data/', 1)) AS export_id
  FROM profiles_export
  WHERE "$path" LIKE '%/data/%'
)
SELECT p.item['job'].s AS job, p.item
FROM profiles_export p CROSS JOIN latest
WHERE p."$path" LIKE '%/AWSDynamoDB/' || latest.export_id || '/data/%'
ORDER BY 1
