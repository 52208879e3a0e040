/** After every workers test: real fetch and timers back, Durable Object storage wiped. */
import { reset } from "cloudflare:test";
import { afterEach, vi } from "vitest";

afterEach(async () => {
  vi.restoreAllMocks();
  vi.useRealTimers();
  await reset();
});
