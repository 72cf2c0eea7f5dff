// Row shapes of the inventory answers, shared by the SQL layer and the console (browser code):
// types only and no imports, so the console takes nothing else from the server side.

/** One GPU of the inventory (`/api/v1/gpus` adds `flags`). */
export interface GpuRow {
  uuid: string;
  gpu_id: string;
  device: string;
  model_name: string;
  hostname: string;
  first_seen: string;
  last_seen: string;
  samples: number;
  metrics: string[];
}

/** One host of `/api/v1/hosts`. */
export interface HostRow {
  hostname: string;
  gpus: number;
  models: string[];
  first_seen: string;
  last_seen: string;
}
