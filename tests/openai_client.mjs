// The official `openai` npm client against a running `eigenformer serve` (driven by
// tests/test_server.py): node openai_client.mjs NPM_NODE_MODULES PORT MODEL [API_KEY]
// Exits 0 when every check passes; prints the first failure and exits 1 otherwise.
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [npm, port, model, apiKey] = process.argv.slice(2);
const { default: OpenAI } = await import(pathToFileURL(join(npm, "openai", "index.mjs")).href);
const client = new OpenAI({
  baseURL: `http://127.0.0.1:${port}/v1`,
  apiKey: apiKey ?? "unused",
  maxRetries: 0,
});

async function streamed(stream, chat) {
  let text = "", finish = null, usage = null, first = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    const choice = chunk.choices[0];
    if (chat && first === null) first = choice.delta.role;
    text += (chat ? choice.delta.content : choice.text) ?? "";
    finish = choice.finish_reason ?? finish;
  }
  return { text, finish, usage, first };
}

async function expectError(promise, status, param) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, status, e.message);
    if (param) assert.equal(e.param, param);
    return e;
  }
  assert.fail(`expected a ${status} error`);
}

try {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);

  const request = { model, prompt: "The tide came in", max_tokens: 10, temperature: 0.7, seed: 3 };
  const completion = await client.completions.create(request);
  assert.equal(completion.object, "text_completion");
  assert.equal(completion.choices.length, 1);
  const s = await streamed(
    await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } }),
    false,
  );
  assert.equal(s.text, completion.choices[0].text);
  assert.equal(s.finish, completion.choices[0].finish_reason);
  assert.deepEqual(s.usage, completion.usage);

  const chatRequest = {
    model,
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Name a colour." },
    ],
    max_tokens: 12,
    temperature: 0.9,
    seed: 11,
  };
  const chat = await client.chat.completions.create(chatRequest);
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.ok(["stop", "length"].includes(chat.choices[0].finish_reason));
  const c = await streamed(await client.chat.completions.create({ ...chatRequest, stream: true }), true);
  assert.equal(c.first, "assistant");
  assert.equal(c.text, chat.choices[0].message.content);
  assert.equal(c.finish, chat.choices[0].finish_reason);

  // The same seeded request twice gives the same text.
  const again = await client.chat.completions.create(chatRequest);
  assert.equal(again.choices[0].message.content, chat.choices[0].message.content);

  await expectError(client.completions.create({ ...request, temperature: 3 }), 400, "temperature");
  await expectError(client.chat.completions.create({ ...chatRequest, messages: [] }), 400, "messages");
  await expectError(client.completions.create({ ...request, model: "not-this-one" }), 404, "model");
  if (apiKey) {
    const wrong = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: apiKey + "x", maxRetries: 0 });
    await expectError(wrong.models.list(), 401);
  }
  console.log("openai client: all checks passed");
} catch (e) {
  console.error("openai client:", e?.stack ?? e);
  process.exit(1);
}
