/** A problem document (RFC 9457) the gateway answered with. */

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  request_id?: string;
  errors?: Array<Record<string, unknown>>;
  [extra: string]: unknown;
}

export class ApiError extends Error {
  override name = "ApiError";
  /** The HTTP status. */
  readonly status: number;
  /** The stable problem type, `https://canistry.dev/problems/<code>`. */
  readonly type: string;
  /** The last segment of `type`, e.g. `daily-limit-exceeded`. */
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  /** `Retry-After` in seconds, when the gateway sent one (429, 503). */
  readonly retryAfter: number | null;
  readonly requestId: string | null;
  readonly problem: ProblemDocument;

  constructor(status: number, problem: ProblemDocument, retryAfter: number | null) {
    const type = String(problem.type ?? "about:blank");
    const code = type.split("/").pop() ?? type;
    super(`${status} ${code}: ${problem.detail || problem.title}`);
    this.status = status;
    this.problem = problem;
    this.type = type;
    this.code = code;
    this.title = String(problem.title ?? "");
    this.detail = String(problem.detail ?? "");
    this.retryAfter = retryAfter;
    this.requestId = typeof problem.request_id === "string" ? problem.request_id : null;
  }

  /** The error of a non-2xx response (its body read as a problem document if it is one). */
  static async fromResponse(response: Response): Promise<ApiError> {
    const text = await response.text();
    let problem: ProblemDocument;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error();
      problem = parsed as ProblemDocument;
    } catch {
      problem = { type: "about:blank", title: response.statusText, status: response.status, detail: text.slice(0, 200) };
    }
    return new ApiError(response.status, problem, retryAfter(response));
  }
}

function retryAfter(response: Response): number | null {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? Math.max(0, seconds) : null;
}
