/**
 * The browser of the dashboard tests: Debian's `chromium` (installed by `npm run
 * setup:browser`), driven by playwright-core, headless and quiet (no sandbox in the CI
 * container, no GPU, no background network, no first-run or sync pages).
 */
import { type Browser, chromium } from "playwright-core";

/** Where `npm run setup:browser` installs Chromium (the Debian package). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Launch headless Chromium for a test; close it in `afterAll`.
 * @throws Error from playwright-core when the binary is missing (run `npm run setup:browser`)
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
