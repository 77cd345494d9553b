// Drives `sd serve`'s page in headless Chromium: fill the form, generate, watch progress,
// see the result, download the PNG and read its `parameters` chunk, cancel a second run,
// and see a bad value refused on the page. Usage: node page.test.cjs URL ARTIFACT_DIR
"use strict";

const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node page.test.cjs URL ARTIFACT_DIR");
  process.exit(2);
}
fs.mkdirSync(artifacts, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// The tEXt / iTXt / zTXt chunks of a PNG file.
function pngText(buffer) {
  check(buffer.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])), "a PNG signature");
  const out = {};
  let at = 8;
  while (at + 12 <= buffer.length) {
    const length = buffer.readUInt32BE(at);
    const type = buffer.toString("latin1", at + 4, at + 8);
    const data = buffer.subarray(at + 8, at + 8 + length);
    if (type === "tEXt") {
      const nul = data.indexOf(0);
      out[data.toString("latin1", 0, nul)] = data.toString("latin1", nul + 1);
    } else if (type === "zTXt") {
      const nul = data.indexOf(0);
      out[data.toString("latin1", 0, nul)] = zlib.inflateSync(data.subarray(nul + 2)).toString("latin1");
    } else if (type === "iTXt") {
      const nul = data.indexOf(0);
      const key = data.toString("latin1", 0, nul);
      const compressed = data[nul + 1] === 1;
      let rest = data.subarray(nul + 3);
      rest = rest.subarray(rest.indexOf(0) + 1);
      rest = rest.subarray(rest.indexOf(0) + 1);
      out[key] = (compressed ? zlib.inflateSync(rest) : rest).toString("utf8");
    }
    if (type === "IEND") break;
    at += 12 + length;
  }
  return out;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.SD_CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("256"));
    const schedulers = await page.$$eval("#scheduler option", (os) => os.map((o) => o.value));
    check(schedulers.includes("dpmpp-karras") && schedulers.length === 8, `schedulers ${schedulers}`);

    // 1. A generation with previews every step.
    const prompt = "a lighthouse on a cliff, oil painting";
    await page.fill("#prompt", prompt);
    await page.fill("#negative_prompt", "fog");
    await page.fill("#steps", "3");
    await page.fill("#guidance_scale", "6");
    await page.click("#random-seed");
    const randomSeed = await page.inputValue("#seed");
    check(/^\d+$/.test(randomSeed), `a random seed, got ${randomSeed}`);
    await page.fill("#seed", "4242");
    await page.selectOption("#scheduler", "euler-a");
    await page.fill("#preview_every", "1");
    await page.click("#generate");
    await page.waitForSelector("#gallery .result img", { timeout: 300000 });
    await page.waitForFunction(() => {
      const img = document.querySelector("#gallery .result img");
      return img && img.complete && img.naturalWidth === 256;
    });
    const status = await page.textContent("#status");
    check(status.startsWith("Done: 1 image"), `status after the run: ${status}`);
    const events = Number(await page.getAttribute("#progress", "data-events"));
    check(events >= 1, `progress events seen: ${events}`);
    check(await page.isVisible("#preview"), "a preview was shown");
    const shown = await page.textContent("#gallery .result pre");
    check(shown.includes("Sampler: Euler a") && shown.includes("Seed: 4242"), `parameters shown: ${shown}`);
    await page.screenshot({ path: path.join(artifacts, "serve-page.png"), fullPage: true });

    // 2. Download the PNG and read its parameters.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("#gallery .result a.download"),
    ]);
    const name = download.suggestedFilename();
    check(name === "a_lighthouse_on_a_cliff,_oil_painting.4242.final.png" || name.endsWith(".4242.final.png"), `file name ${name}`);
    const saved = path.join(artifacts, name);
    await download.saveAs(saved);
    const text = pngText(fs.readFileSync(saved));
    const expected = `${prompt}\nNegative prompt: fog\nSteps: 3, Sampler: Euler a, CFG scale: 6.0, Seed: 4242, Size: 256x256, Model: sd1-tiny`;
    check(text.parameters === expected, `parameters chunk: ${JSON.stringify(text.parameters)}`);

    // 3. A long run, cancelled once it is under way.
    await page.fill("#steps", "900");
    await page.fill("#preview_every", "0");
    await page.click("#generate");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Step "), null, { timeout: 300000 });
    check(await page.isEnabled("#cancel"), "Cancel is enabled while running");
    await page.click("#cancel");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Cancelled"), null, { timeout: 120000 });
    check(await page.isEnabled("#generate"), "Generate is enabled again");
    check((await page.$$("#gallery .result")).length === 1, "the cancelled run added no result");

    // 4. A bad value is refused with the server's message on the page.
    await page.fill("#steps", "-3");
    await page.click("#generate");
    await page.waitForSelector("#error:not([hidden])");
    const error = await page.textContent("#error");
    check(error.includes("steps") && error.includes("between 1 and"), `error shown: ${error}`);
    await page.screenshot({ path: path.join(artifacts, "serve-page-error.png"), fullPage: true });
    check(consoleErrors.filter((e) => !e.includes("400")).length === 0, `console errors: ${consoleErrors.join(" | ")}`);
    console.log(`page test passed: ${events} progress events, download ${name}, screenshots in ${artifacts}`);
  } catch (e) {
    await page.screenshot({ path: path.join(artifacts, "serve-page-failure.png"), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
