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
    const text = document.createElement("span");
    text.className = "message";
    text.textContent = event.message;
    const at = document.createElement("time");
    at.textContent = event.at;
    item.append(text, " ", at);
    activity.prepend(item);
    while (activity.children.length > 50) activity.lastElementChild.remove();
  });
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
