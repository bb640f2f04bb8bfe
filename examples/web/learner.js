// The learner: a key in IndexedDB, registration, units, a quiz, and what it earned.
import { ApiError, Client } from "./vendor/canistry-client.js";
import { describe, gatewayUrl, say, show } from "./common.js";
import { loadOrCreateIdentity } from "./keystore.js";

const gateway = gatewayUrl();
const $ = (id) => document.getElementById(id);
let api;
let completed = new Set();

async function attempt(action) {
  say("");
  try {
    return await action();
  } catch (error) {
    say(describe(error, gateway));
    return undefined;
  }
}

function showAccount(me) {
  completed = new Set(me.completed_units);
  $("hello").textContent = `Hello, ${me.profile.name}`;
  $("balance").textContent = me.balance.staked;
  $("pending").textContent = me.balance.pending;
  $("earned").textContent = me.today.earned;
  $("attempts-left").textContent = me.today.attempts_left;
  show("register", false);
  show("account");
}

async function loadUnits() {
  const page = await api.units({ limit: 100 });
  const list = $("units");
  list.replaceChildren(
    ...page.units.map((u) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.unit = u.id;
      if (completed.has(u.id)) button.classList.add("done");
      button.innerHTML = `<b></b><br><span class="muted"></span>`;
      button.querySelector("b").textContent = u.title;
      button.querySelector("span").textContent = `${u.subject} · ${u.reward} tokens${completed.has(u.id) ? " · done" : ""}`;
      button.onclick = () => attempt(() => openUnit(u.id));
      item.append(button);
      return item;
    }),
  );
  show("catalogue");
}

async function openUnit(unitId) {
  const unit = await api.unit(unitId);
  $("lesson-title").textContent = unit.title;
  $("lesson-meta").textContent = `${unit.subject} · reward ${unit.reward} · pass with ${unit.quiz.pass_score} of ${unit.quiz.questions.length}`;
  $("lesson-body").replaceChildren(...unit.body.split("\n\n").map((text) => Object.assign(document.createElement("p"), { textContent: text.replace(/\*/g, "") })));
  const quiz = $("quiz");
  quiz.replaceChildren(
    ...unit.quiz.questions.map((q) => {
      const set = document.createElement("fieldset");
      set.append(Object.assign(document.createElement("legend"), { textContent: q.prompt }));
      for (const c of q.choices) {
        const label = document.createElement("label");
        const input = Object.assign(document.createElement("input"), { type: "radio", name: q.id, value: c.id, required: true });
        label.append(input, ` ${c.text}`);
        set.append(label);
      }
      return set;
    }),
    Object.assign(document.createElement("button"), { className: "primary", type: "submit", textContent: "Submit answers" }),
  );
  quiz.onsubmit = (event) => {
    event.preventDefault();
    const answers = Object.fromEntries(new FormData(quiz));
    attempt(() => submit(unit, answers));
  };
  show("result", false);
  show("lesson");
  $("lesson").scrollIntoView({ behavior: "smooth" });
}

async function submit(unit, answers) {
  const button = $("quiz").querySelector("button");
  button.disabled = true;
  try {
    const r = await api.submit(unit.id, answers);
    const box = $("result");
    box.className = `notice ${r.passed ? "ok" : "fail"}`;
    const earned = r.reward > 0 ? ` You earned ${r.reward} tokens${r.pending ? ` (${r.pending} pending)` : ""}.` : r.passed && !r.first_completion ? " No reward: you had already completed this unit." : "";
    box.textContent = `${r.passed ? "Passed" : "Not passed"}: score ${r.score}/${r.total}.${earned} Balance ${r.balance}. Attempts left today: ${r.attempts_left}.`;
    show("result");
    showAccount(await api.me());
    await loadUnits();
  } finally {
    button.disabled = false;
  }
}

async function start() {
  const identity = await loadOrCreateIdentity();
  $("principal").textContent = identity.principal;
  $("key-kind").textContent = identity.extractable ? "" : ", non-extractable";
  api = new Client(gateway, identity);
  try {
    showAccount(await api.me());
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "not-registered")) throw error;
    show("register");
  }
  await loadUnits();
}

$("register-form").onsubmit = (event) => {
  event.preventDefault();
  const form = Object.fromEntries(new FormData(event.target));
  attempt(async () => {
    await api.register(form);
    showAccount(await api.me());
    await loadUnits();
  });
};

document.body.dataset.state = "loading";
attempt(start).finally(() => {
  document.body.dataset.state = "ready";
});
