// Entry for `npm run provision` and the Kubernetes provisioning Job: creates (or updates)
// streams, consumers, buckets and ClickHouse tables, then exits. Safe to run repeatedly.
import { clickhouseEnv, parseEnv } from './config.ts';
import { clickhouseClient } from './clickhouse.ts';
import { connectNats } from './nats.ts';
import { provisionClickHouse, provisionEnv, provisionNats } from './provision.ts';

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
    await provisionClickHouse(ch, chCfg.CLICKHOUSE_DATABASE);
  } finally {
    await ch.close();
  }
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isMain) {
  provisionAll().then(
    () => console.log('provisioned: streams, consumers, buckets, ClickHouse tables'),
    (e) => {
      console.error(`provisioning failed: ${e instanceof Error ? e.message : e}`);
      process.exit(1);
    },
  );
}
