import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, setUnauthorizedHandler, token } from './api.ts';
import { useLoad, Show } from './common.tsx';
import { Fleet } from './fleet.tsx';
import { GpuPage } from './gpu.tsx';
import { PipelinePage } from './pipeline.tsx';
import { state } from './state.ts';
import { Upload } from './upload.tsx';

// The console shell: hash routes (#/fleet, #/gpu/<uuid>, #/upload, #/pipeline), and a token
// prompt when the API requires one (kept in sessionStorage: gone when the tab closes).

interface ConsoleConfig {
  auth: 'bearer' | 'none';
  upload_url: string | null;
}

const route = () => location.hash.replace(/^#\/?/, '') || 'fleet';

function TokenForm(props: { onToken: () => void }) {
  const [value, setValue] = useState('');
  return (
    <form
      class="card token"
      onSubmit={(e) => {
        e.preventDefault();
        token.set(value.trim());
        props.onToken();
      }}
    >
      <h2>API token</h2>
      <p>This API requires a bearer token. It is kept for this browser tab only (sessionStorage).</p>
      <input id="token" type="password" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit">Continue</button>
    </form>
  );
}

function App() {
  const [path, setPath] = useState(route());
  const [config] = useLoad(() => api<ConsoleConfig>('/api/v1/console/config'), []);
  const [hasToken, setHasToken] = useState(!!token.get());
  useEffect(() => {
    const onHash = () => setPath(route());
    addEventListener('hashchange', onHash);
    setUnauthorizedHandler(() => {
      token.clear();
      setHasToken(false);
    });
    return () => removeEventListener('hashchange', onHash);
  }, []);
  state.page = path.split('/')[0];
  const [page, arg] = [path.split('/')[0], decodeURIComponent(path.split('/').slice(1).join('/'))];
  const nav = (p: string, label: string) => <a href={`#/${p}`} class={page === p ? 'on' : ''}>{label}</a>;
  return (
    <>
      <header>
        <b>GPU telemetry</b>
        <nav>
          {nav('fleet', 'Fleet')}
          {nav('upload', 'Upload')}
          {nav('pipeline', 'Pipeline')}
          <a href="docs">API</a>
        </nav>
        {hasToken && (
          <button
            class="link"
            onClick={() => {
              token.clear();
              setHasToken(false);
            }}
          >
            forget token
          </button>
        )}
      </header>
      <main>
        <Show value={config} what="Console configuration">
          {(cfg) =>
            cfg.auth === 'bearer' && !hasToken ? (
              <TokenForm onToken={() => setHasToken(true)} />
            ) : page === 'gpu' && arg ? (
              <GpuPage uuid={arg} />
            ) : page === 'upload' ? (
              <Upload uploadUrl={cfg.upload_url} />
            ) : page === 'pipeline' ? (
              <PipelinePage />
            ) : (
              <Fleet />
            )
          }
        </Show>
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
