import type { ClickHouseClient } from '@clickhouse/client';
import { retryRead } from '../../shared/clickhouse.ts';
import { inTouchedBuckets, touchedBucketsCte } from '../../shared/batch-keys.ts';
import { CLICKHOUSE_TABLES as T } from '../../shared/names.ts';

// The one read of the live relay: the rows of just-stored batches, for the watched GPUs and
// metrics only. Run once per announcement, whatever the number of clients. The batches' buckets
// (shared/batch-keys.ts) bound the read to their primary-key ranges.

export interface LiveSample {
  uuid: string;
  hostname: string;
  metric_name: string;
  timestamp: string;
  value: number;
}

export async function liveSamples(
  client: ClickHouseClient,
  q: { batches: string[]; uuids: string[]; metrics: string[]; limit: number },
): Promise<LiveSample[]> {
  return retryRead(async () => {
    const rs = await client.query({
      query: `WITH ${touchedBucketsCte(60, 'batches')}
        SELECT toString(uuid) AS uuid, toString(hostname) AS hostname, toString(metric_name) AS metric_name, timestamp, value
        FROM ${T.samples}
        WHERE ${inTouchedBuckets('timestamp', 60)}
          AND batch_id IN {batches:Array(String)}
          AND (uuid IN {uuids:Array(String)} OR metric_name IN {metrics:Array(String)})
        ORDER BY timestamp, uuid, metric_name
        LIMIT {limit:UInt32}`,
      query_params: q,
      format: 'JSONEachRow',
      clickhouse_settings: { date_time_output_format: 'iso', output_format_json_quote_64bit_integers: 0, max_execution_time: 30 },
    });
    return rs.json<LiveSample>();
  });
}
