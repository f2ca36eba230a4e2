/**
 * Errors as OpenAI's API writes them: `{ "error": { "message", "type", "param", "code" } }`, with the HTTP status
 * that goes with each. Every refusal of the server goes through ApiError, so clients written for OpenAI (the
 * official SDKs raise on `error.message`) read ours the same way.
 */
import type { FastifyError } from 'fastify';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'server_error'
  | 'service_unavailable';

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the request field (OpenAI's `param`, e.g. `messages[0].content`). */
export function badRequest(param: string | null, message: string, code: string | null = 'invalid_value'): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** One Ajv error (what Fastify attaches to a validation error), in the fields we read. */
interface AjvError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** `/messages/0/content` → `messages[0].content`. */
export function paramOf(instancePath: string, child?: string): string | null {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? null : out;
}

/** The first schema violation of a request body as a 400 that names the field and what it must be. */
export function fromValidation(errors: readonly AjvError[]): ApiError {
  const e = errors[0];
  switch (e.keyword) {
    case 'additionalProperties': {
      const field = String(e.params.additionalProperty);
      const param = paramOf(e.instancePath, field);
      return badRequest(param, `unrecognized request field '${param}'; see the server's README for the fields it takes`, 'unknown_parameter');
    }
    case 'required': {
      const param = paramOf(e.instancePath, String(e.params.missingProperty));
      return badRequest(param, `missing required field '${param}'`, 'missing_required_parameter');
    }
    case 'enum': {
      const param = paramOf(e.instancePath);
      const allowed = (e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return badRequest(param, `'${param}' must be one of ${allowed}`);
    }
    case 'type': {
      const param = paramOf(e.instancePath);
      const types = String(e.params.type).split(',').filter((t) => t !== 'null');
      return badRequest(param, `'${param ?? 'body'}' must be ${types.join(' or ')}${param ? ' (or null)' : ''}`, 'invalid_type');
    }
    default: {
      const param = paramOf(e.instancePath);
      return badRequest(param, `'${param ?? 'body'}' ${e.message ?? 'is invalid'}`);
    }
  }
}

/**
 * Any error a route or Fastify itself raised, as an ApiError: schema violations, malformed JSON, a body too
 * large or of the wrong content type, and (as a 500 without internals) anything unexpected.
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const fe = err as FastifyError & { validation?: AjvError[] };
  if (fe && Array.isArray(fe.validation) && fe.validation.length > 0) return fromValidation(fe.validation);
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  switch (fe?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'the request body is larger than this server takes; shorten the prompt', 'invalid_request_error', null, 'request_too_large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'send the request body as JSON with Content-Type: application/json', 'invalid_request_error', null, 'unsupported_media_type');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return badRequest(null, 'the request body is empty; send a JSON object', 'invalid_json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return badRequest(null, `the request body is not valid JSON: ${fe.message}`, 'invalid_json');
  }
  if (err instanceof SyntaxError || (status === 400 && /JSON/i.test(fe?.message ?? ''))) {
    return badRequest(null, `the request body is not valid JSON: ${(err as Error).message}`, 'invalid_json');
  }
  if (status >= 400 && status < 500) return new ApiError(status, fe.message, 'invalid_request_error', null, fe.code ?? null);
  return new ApiError(500, 'internal server error; the server log has the details', 'server_error', null, 'internal_error');
}
