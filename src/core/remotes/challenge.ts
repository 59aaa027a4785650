/**
 * `WWW-Authenticate` parsing (RFC 7235 §4.1): one or more challenges,
 * comma separated, each an auth scheme followed by either a token68 or
 * comma-separated `name=value` parameters (value a token or a quoted string
 * with backslash escapes). A response may carry several such headers.
 */

export interface Challenge {
  /** Lower-cased auth scheme: `bearer`, `basic`, ... */
  scheme: string;
  /** Parameters with lower-cased names. */
  params: Record<string, string>;
}

const TCHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const TOKEN68 = /[A-Za-z0-9._~+/-]/;

class Scanner {
  pos = 0;
  constructor(readonly s: string) {}
  get done(): boolean {
    return this.pos >= this.s.length;
  }
  peek(): string {
    return this.s[this.pos] ?? '';
  }
  skipSpace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  skipSpaceAndCommas(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }
  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.peek())) this.pos++;
    return this.s.slice(start, this.pos);
  }
  /** Quoted string starting at the opening quote; undefined if unterminated. */
  quoted(): string | undefined {
    this.pos++;
    let out = '';
    while (!this.done) {
      const c = this.peek();
      this.pos++;
      if (c === '"') return out;
      if (c === '\\' && !this.done) {
        out += this.peek();
        this.pos++;
      } else {
        out += c;
      }
    }
    return undefined;
  }
  /**
   * Whether the text at the cursor is `name = value` (a parameter), not a
   * new challenge nor a token68 (whose `=` padding is followed by more `=`,
   * a comma or the end).
   */
  atParam(): boolean {
    const save = this.pos;
    const name = this.token();
    this.skipSpace();
    let isParam = name !== '' && this.peek() === '=';
    if (isParam) {
      this.pos++;
      this.skipSpace();
      isParam = !this.done && this.peek() !== '=' && this.peek() !== ',';
    }
    this.pos = save;
    return isParam;
  }
}

function parseOne(header: string, out: Challenge[]): void {
  const sc = new Scanner(header);
  for (;;) {
    sc.skipSpaceAndCommas();
    if (sc.done) return;
    const scheme = sc.token();
    if (scheme === '') {
      // Not a scheme: skip to the next comma and try again.
      while (!sc.done && sc.peek() !== ',') sc.pos++;
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    sc.skipSpace();
    if (!sc.atParam()) {
      // token68 (as in `Negotiate abc==`) or nothing: not used by registries, skipped.
      while (!sc.done && (TOKEN68.test(sc.peek()) || sc.peek() === '=')) sc.pos++;
      continue;
    }
    // auth-params until something that is not `name=` follows a comma.
    for (;;) {
      sc.skipSpace();
      const name = sc.token().toLowerCase();
      sc.skipSpace();
      sc.pos++; // "="
      sc.skipSpace();
      let value: string | undefined;
      if (sc.peek() === '"') {
        value = sc.quoted();
        if (value === undefined) return; // unterminated quote: drop the rest
      } else {
        value = sc.token();
      }
      if (!Object.hasOwn(challenge.params, name)) challenge.params[name] = value;
      sc.skipSpace();
      if (sc.peek() !== ',') {
        if (sc.done) return;
        // Garbage after a value: skip to the next comma.
        while (!sc.done && sc.peek() !== ',') sc.pos++;
      }
      sc.skipSpaceAndCommas();
      if (sc.done || !sc.atParam()) break;
    }
  }
}

/** All challenges of one or more `WWW-Authenticate` header values, in order. */
export function parseWwwAuthenticate(headers: string | readonly string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  if (headers === undefined) return out;
  for (const h of typeof headers === 'string' ? [headers] : headers) parseOne(h, out);
  return out;
}
