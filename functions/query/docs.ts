// GET /docs: a self-contained page (no external scripts or styles) that reads /openapi.json and
// lists the operations with their parameters and responses. A token field covers servers that
// require one for the document.

export const DOCS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GPU telemetry query API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}code{background:#eee;padding:0 .3em}
section{border-top:1px solid #ccc;padding:.5em 0}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}</style>
</head><body><h1>GPU telemetry query API</h1>
<p>Bearer token (only if the server requires one): <input id="token" type="password" size="30"> <button id="load">Load</button>
<a href="openapi.json">openapi.json</a></p><div id="out">Loading…</div>
<script>
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
async function load() {
  const token = document.getElementById('token').value;
  const out = document.getElementById('out');
  const r = await fetch('openapi.json', { headers: token ? { authorization: 'Bearer ' + token } : {} });
  if (!r.ok) { out.textContent = 'openapi.json: HTTP ' + r.status; return; }
  const doc = await r.json();
  let html = '<p>' + esc(doc.info.description) + '</p>';
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    html += '<section><h3><code>' + method.toUpperCase() + ' ' + esc(path) + '</code> ' + esc(op.summary) + '</h3><p>' + esc(op.description) + '</p>';
    if (op.parameters?.length) html += '<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>' +
      op.parameters.map((p) => '<tr><td><code>' + esc(p.name) + '</code></td><td>' + esc(p.in) + '</td><td>' + (p.required ? 'yes' : 'no') + '</td><td>' + esc(p.description) + '</td></tr>').join('') + '</table>';
    html += '<ul>' + Object.entries(op.responses).map(([code, resp]) => '<li><b>' + esc(code) + '</b> ' + esc(resp.description) + '</li>').join('') + '</ul></section>';
  }
  out.innerHTML = html;
}
document.getElementById('load').onclick = load;
load();
</script></body></html>
`;
