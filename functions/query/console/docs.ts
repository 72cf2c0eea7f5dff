// GET /docs: Swagger UI (swagger-ui-dist, served from this function) on /openapi.json, with
// "try it out" against this server. The token from the console's session is sent with the
// document request and preauthorized, so requests from the page carry it.

declare const SwaggerUIBundle: ((opts: Record<string, unknown>) => { preauthorizeApiKey(name: string, value: string): void }) & {
  presets: { apis: unknown };
};

const token = sessionStorage.getItem('gputel.token');
const ui = SwaggerUIBundle({
  url: 'openapi.json',
  dom_id: '#swagger-ui',
  presets: [SwaggerUIBundle.presets.apis],
  tryItOutEnabled: true,
  persistAuthorization: false,
  requestInterceptor: (req: { url: string; headers: Record<string, string> }) => {
    if (token && !req.headers.Authorization) req.headers.Authorization = `Bearer ${token}`;
    return req;
  },
  onComplete: () => {
    if (token) ui.preauthorizeApiKey('bearerAuth', token);
  },
});
