/* Settings › Automations editor: field-aware inputs as progressive enhancement.
   Without this script the editor posts typed text (with datalist suggestions). With it, a
   condition's comparisons follow its field, a value becomes a select of the brand's objects for
   the chosen field or action (several picks for "is one of"), and the idle inputs show only for
   the idle event. The posted names stay the same: one condition_value / action_value per row. */
(() => {
  "use strict";
  const form = document.getElementById("automation-form");
  if (!form) return;
  const LIST_OPS = ["in", "not_in"];

  const choicesOf = (kind) => {
    const list = form.querySelector(`datalist.js-choices[data-kind="${kind}"]`);
    return list ? Array.from(list.options).map((o) => [o.value, o.label || o.textContent]) : null;
  };

  const currentValues = (row) => {
    const hidden = row.querySelector(".js-value");
    return hidden.value.split(",").map((v) => v.trim()).filter(Boolean);
  };

  /* The text input stays the posted value; a select (single or multiple) drives it. */
  const enhanceValue = (row, kind, multiple) => {
    const input = row.querySelector(".js-value");
    const old = row.querySelector(".js-picker");
    if (old) old.remove();
    const choices = kind ? choicesOf(kind) : null;
    if (!choices) {
      input.hidden = false;
      return;
    }
    const picked = currentValues(row);
    const select = document.createElement("select");
    select.className = "js-picker";
    select.multiple = multiple;
    select.setAttribute("aria-label", input.getAttribute("aria-label") || "Value");
    if (input.id) select.id = `${input.id}-pick`;
    if (!multiple) {
      const blank = document.createElement("option");
      blank.value = "";
      blank.textContent = "(pick one)";
      select.append(blank);
    }
    choices.forEach(([value, label]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      option.selected = picked.includes(value);
      select.append(option);
    });
    const sync = () => {
      input.value = Array.from(select.selectedOptions).map((o) => o.value).filter(Boolean).join(", ");
    };
    select.addEventListener("change", sync);
    input.hidden = true;
    input.after(select);
    sync();
  };

  const refreshCondition = (row) => {
    const field = row.querySelector(".js-field");
    const op = row.querySelector(".js-op");
    const chosen = field.selectedOptions[0];
    const ops = chosen && chosen.dataset.ops ? chosen.dataset.ops.split(" ") : null;
    Array.from(op.options).forEach((option) => {
      option.hidden = ops !== null && !ops.includes(option.value);
      option.disabled = option.hidden;
    });
    if (op.selectedOptions[0] && op.selectedOptions[0].disabled) {
      const first = Array.from(op.options).find((o) => !o.disabled);
      if (first) op.value = first.value;
    }
    enhanceValue(row, chosen ? chosen.dataset.kind : null, LIST_OPS.includes(op.value));
  };

  const refreshAction = (row) => {
    const chosen = row.querySelector(".js-field").selectedOptions[0];
    enhanceValue(row, chosen ? chosen.dataset.kind : null, false);
  };

  form.querySelectorAll(".js-condition").forEach((row) => {
    row.querySelector(".js-field").addEventListener("change", () => {
      row.querySelector(".js-value").value = "";
      refreshCondition(row);
    });
    row.querySelector(".js-op").addEventListener("change", () => refreshCondition(row));
    refreshCondition(row);
  });
  form.querySelectorAll(".js-action").forEach((row) => {
    row.querySelector(".js-field").addEventListener("change", () => {
      row.querySelector(".js-value").value = "";
      refreshAction(row);
    });
    refreshAction(row);
  });

  const event = form.querySelector(".js-event");
  const refreshIdle = () => {
    form.querySelectorAll(".js-idle").forEach((box) => {
      box.hidden = event.value !== "ticket_idle";
    });
  };
  event.addEventListener("change", refreshIdle);
  refreshIdle();
})();
