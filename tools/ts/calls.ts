// Calls every operation of the REST API through openapi-fetch, typed by openapi-typescript's
// `paths` from the live spec. tests/test_clients.py compiles it with tsc --strict; it is not run.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "../build/api.d.ts";

type AnyKind = components["schemas"]["AnyKind"];
type ErrorEnvelope = components["schemas"]["Error"];

export function makeClient(baseUrl: string, token?: string) {
  const client = createClient<paths>({ baseUrl });
  if (token) {
    const bearer: Middleware = {
      onRequest({ request }) {
        request.headers.set("Authorization", `Bearer ${token}`);
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}

export async function callEverything(baseUrl: string, token?: string): Promise<void> {
  const api = makeClient(baseUrl, token);

  // GET /api?data=<kind>
  const q = await api.GET("/api", { params: { query: { data: "pizza" } } });
  if (q.data) {
    const kind: AnyKind = q.data;
    console.log(kind.type, kind.content);
  } else if (q.error) {
    const err: ErrorEnvelope | components["schemas"]["Problem"] = q.error;
    console.log(q.response.status, err);
  }

  // POST /api?data=<kind> with no body (query parameter optional, body not required)
  const p1 = await api.POST("/api", { params: { query: { data: "hits" } } });
  // POST /api with a JSON body
  const p2 = await api.POST("/api", { body: { data: "people" } });
  // POST /api with a form body
  const p3 = await api.POST("/api", {
    body: { data: "1" },
    bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  for (const r of [p1, p2, p3]) console.log(r.response.status, r.data?.type);

  // GET /api/{kind}
  const t = await api.GET("/api/{kind}", { params: { path: { kind: "errors" } } });
  console.log(t.data?.content ?? t.error);

  // GET /api/teapot: only ever an error (418)
  const tea = await api.GET("/api/teapot");
  const never: undefined = tea.data;
  console.log(never, tea.response.status, tea.error);

  // GET /api/stats
  const s = await api.GET("/api/stats");
  if (s.data) {
    const hits: number = s.data.content.totals.hits;
    const lastHour = s.data.content.per_hour.at(-1)?.hour;
    console.log(hits, lastHour);
  }

  // GET /api/openapi.json
  const doc = await api.GET("/api/openapi.json");
  console.log(doc.data?.openapi);

  // GET /healthz
  const h = await api.GET("/healthz");
  const status: "ok" | "unavailable" | undefined = h.data?.status;
  // A 503 answers the Health schema too; 500/414/431 the Error envelope or problem details.
  const failed = h.error && "status" in h.error ? h.error.status : h.error;
  console.log(status, failed);

  // GET /metrics: Prometheus' text format, with a token that has the metrics scope
  const m = await api.GET("/metrics", { parseAs: "text" });
  const exposition: string | undefined = m.data;
  console.log(exposition?.split("\n").length, m.error);
}

// Plain fetch, typed by the same `paths`: the 200 body of GET /api.
type GetApi200 = paths["/api"]["get"]["responses"][200]["content"]["application/json"];
export async function plainFetch(baseUrl: string): Promise<GetApi200> {
  const r = await fetch(`${baseUrl}/api?data=pizza`);
  return (await r.json()) as GetApi200;
}
