/**
 * How deep JSON may nest where a client hands it to us (message data, a
 * recipient's fields): far beyond any real payload, far below the depth at
 * which JSON.stringify throws (about 10,000 in V8), so nothing a client sent
 * can make a later serialisation fail.
 */
export const MAX_JSON_DEPTH = 64;

/** True when `value` nests arrays or objects more than `max` deep. Iterative: it cannot overflow the stack itself. */
export function nestsDeeperThan(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
