import type { ClickHouseClient } from '@clickhouse/client';
import { HttpError } from '../../shared/http.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';
import { selectRows } from './sql.ts';

// GET /api/v1/uploads/{id}/duplicates: how many of an upload's stored rows were already present
// (an earlier copy of the same sample — uuid, metric, timestamp — was stored before them) and how
// many of its samples a later upload has since replaced. Not known cheaply at ingest (it needs the
// samples already stored), so computed on demand: one pass over the upload's rows (upload_id is
// not in the sort key: a column scan) and the GPUs and time range they cover.

export interface UploadDuplicates {
  upload_id: string;
  rows_stored: number;
  already_present: number;
  superseded: number;
}

export async function uploadDuplicates(client: ClickHouseClient, id: string, signal?: AbortSignal): Promise<UploadDuplicates> {
  const [row] = await selectRows<{ rows_stored: number; already_present: number; superseded: number }>(
    client,
    `WITH mine AS (SELECT uuid, min(timestamp) AS lo, max(timestamp) AS hi FROM ${T.samples} WHERE upload_id = {id:String} GROUP BY uuid)
     SELECT sum(n) AS rows_stored, sum(n - first_mine) AS already_present, countIf(NOT last_mine) AS superseded
     FROM (
       SELECT countIf(upload_id = {id:String}) AS n,
         argMin(upload_id, (received_at, batch_id, line)) = {id:String} AS first_mine,
         argMax(upload_id, (received_at, batch_id, line)) = {id:String} AS last_mine
       FROM ${T.samples}
       WHERE uuid IN (SELECT uuid FROM mine)
         AND timestamp >= (SELECT min(lo) FROM mine) AND timestamp <= (SELECT max(hi) FROM mine)
       GROUP BY uuid, metric_name, timestamp
       HAVING n > 0
     )`,
    { id },
    signal,
  );
  const stored = Number(row?.rows_stored ?? 0);
  if (stored === 0) throw new HttpError(404, 'upload_not_found', `no rows of upload ${id} are stored (unknown, not ingested yet, or past raw retention)`);
  return { upload_id: id, rows_stored: stored, already_present: Number(row.already_present), superseded: Number(row.superseded) };
}
