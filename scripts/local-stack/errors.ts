/** A failure of the local stack that the operator can act on: printed as one line, exit 1. */
export class StackError extends Error {
  override name = 'StackError';
  constructor(
    message: string,
    /**
     * Log lines that explain it (a child's last output), printed under the message. A function is
     * read after the stack has stopped, when the child has flushed its last lines.
     */
    readonly detail?: string | (() => string),
  ) {
    super(message);
  }
}
