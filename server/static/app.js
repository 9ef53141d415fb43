// Live updates for pages that are complete without them: the customer switcher submits on
// change, the activity list and an execution's log follow Server-Sent Events. Text is inserted
// with textContent only, never as HTML.
"use strict";
document.documentElement.classList.add("js");
const switcher = document.getElementById("customer-switcher");
if (switcher) switcher.addEventListener("change", () => switcher.form.submit());

const activity = document.getElementById("activity");
if (activity && activity.dataset.live) {
  const source = new EventSource(activity.dataset.live);
  source.addEventListener("activity", (message) => {
    const event = JSON.parse(message.data);
    if (activity.querySelector(`li[data-id="${event.id}"]`)) return;
    const item = document.createElement("li");
    item.dataset.id = event.id;
    item.className = "kind-" + event.kind + " fresh";
    // The link is a path the server made from the event's record, never text of the event.
    const text = document.createElement(event.href ? "a" : "span");
    if (event.href && event.href.startsWith("/c/")) text.setAttribute("href", event.href);
    text.className = "message";
    text.textContent = event.message;
    const at = document.createElement("time");
    at.textContent = event.at;
    item.append(text, " ", at);
    activity.prepend(item);
    while (activity.children.length > 50) activity.lastElementChild.remove();
    refreshCards();
  });
}

// The cards follow the feed: after activity arrives their figures are read again, at most once
// every two seconds however busy the feed is.
const cards = document.getElementById("cards");
let cardsPending = false;
function refreshCards() {
  if (!cards || !cards.dataset.live || cardsPending) return;
  cardsPending = true;
  setTimeout(async () => {
    try {
      const response = await fetch(cards.dataset.live, { credentials: "same-origin" });
      if (response.ok) {
        for (const card of await response.json()) {
          const element = cards.querySelector(`[data-card="${card.key}"]`);
          if (!element) continue;
          element.querySelector(".total").textContent = String(card.total);
          element.querySelector(".detail").textContent = card.detail;
        }
      }
    } finally {
      cardsPending = false;
    }
  }, 2000);
}

const log = document.getElementById("log");
if (log && log.dataset.live) {
  const status = document.getElementById("execution-status");
  const reason = document.getElementById("execution-reason");
  const source = new EventSource(log.dataset.live);
  source.addEventListener("log", (message) => {
    const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(JSON.parse(message.data).text);
    if (follow) log.scrollTop = log.scrollHeight;
  });
  const mark = (element, value) => {
    element.textContent = value;
    element.className = "status status-" + value.replaceAll(" ", "-");
  };
  source.addEventListener("step", (message) => {
    const step = JSON.parse(message.data);
    const badge = document.querySelector(`#step-${step.index} .status`);
    if (badge) mark(badge, step.status);
  });
  source.addEventListener("execution", (message) => {
    const execution = JSON.parse(message.data);
    mark(status, execution.status);
    reason.textContent = execution.reason;
    const cancel = document.getElementById("cancel");
    if (cancel && !execution.active) cancel.remove();
  });
  source.addEventListener("end", () => source.close());
}
