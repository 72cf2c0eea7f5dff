// Entry for `npm run provision` and the Kubernetes provisioning Job: creates (or updates)
// streams, consumers, buckets and ClickHouse tables, then exits. Safe to run repeatedly.
import { clickhouseEnv, parseEnv } from './config.ts';
import { clickhouseClient } from './clickhouse.ts';
import { loggerFor } from './log.ts';
import { connectNats } from './nats.ts';
import { provisionClickHouse, provisionEnv, provisionNats, retentionOf } from './provision.ts';

export async function provisionAll(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const cfg = parseEnv(provisionEnv, env);
  const chCfg = parseEnv(clickhouseEnv, env);
  const nc = await connectNats('provision', env);
  try {
    await provisionNats(nc, cfg);
  } finally {
    await nc.drain();
  }
  const ch = clickhouseClient(chCfg, { database: null });
  try {
    await provisionClickHouse(ch, chCfg.CLICKHOUSE_DATABASE, retentionOf(cfg));
  } finally {
    await ch.close();
  }
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isMain) {
  const log = loggerFor('provision');
  provisionAll().then(
    () => log.info('provisioned: streams, consumers, buckets, ClickHouse tables'),
    (e) => {
      log.fatal({ err: e }, 'provisioning failed');
      process.exit(1);
    },
  );
}
