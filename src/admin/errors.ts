/** An admin API error with its HTTP status and a stable code for the JSON body. */
export class AdminRequestError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'AdminRequestError';
    this.status = status;
    this.code = code;
  }
}
