// The console's door to livehub: the JavaScript SDK (sdk/livehub-client.js, served by livehub at
// /sdk/livehub-client.js), the same module any other frontend imports. REST calls and the
// signaling client both come from `livehub`; this file only adds how the console words errors.

import { Livehub } from '/sdk/livehub-client.js';

/** The livehub this page was served by (REST on its origin, signaling on its /ws). */
export const livehub = new Livehub();

/** The server's reasons for one input field (validation errors name fields by wire name). */
export function fieldReasons(err, field) {
  const reasons = err?.details?.[field];
  if (Array.isArray(reasons)) return reasons.map(String);
  if (typeof reasons === 'string') return [reasons];
  return [];
}

/** "What failed: the server's message [code, HTTP status]". */
export const describe = (what, err) =>
  `${what}: ${err.message}` + (err.code ? ` [${err.code}${err.status ? `, HTTP ${err.status}` : ''}]` : '');
