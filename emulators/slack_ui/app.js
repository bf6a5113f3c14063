// The Slack stand-in's demo page: renders Block Kit as Slack does and sends what the user does
// to the emulator (emulators/slack_ui.py), which signs it and forwards it to the app.
// Every value from a message goes into the page as text nodes: nothing is parsed as HTML.
"use strict";

const EMOJI = {
  red_circle: "🔴", large_orange_circle: "🟠", large_yellow_circle: "🟡", large_blue_circle: "🔵",
  large_green_circle: "🟢", white_circle: "⚪", black_circle: "⚫", warning: "⚠️", rotating_light: "🚨",
  white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", no_entry: "⛔", no_entry_sign: "🚫",
  octagonal_sign: "🛑", eyes: "👀", mag: "🔍", lock: "🔒", unlock: "🔓", key: "🔑", shield: "🛡️",
  hourglass: "⌛", hourglass_flowing_sand: "⏳", clock1: "🕐", stopwatch: "⏱️", calendar: "📅",
  bell: "🔔", no_bell: "🔕", pager: "📟", fire: "🔥", skull: "💀", bug: "🐛", zap: "⚡",
  information_source: "ℹ️", question: "❓", exclamation: "❗", bangbang: "‼️", memo: "📝",
  clipboard: "📋", bar_chart: "📊", chart_with_upwards_trend: "📈", package: "📦", gear: "⚙️",
  wrench: "🔧", hammer: "🔨", computer: "💻", desktop_computer: "🖥️", cloud: "☁️", link: "🔗",
  thumbsup: "👍", "+1": "👍", thumbsdown: "👎", "-1": "👎", wave: "👋", tada: "🎉", sparkles: "✨",
  broom: "🧹", mute: "🔇", zzz: "💤", stop_sign: "🛑", large_red_square: "🟥", arrow_right: "➡️",
  hospital: "🏥", ambulance: "🚑", construction: "🚧", busts_in_silhouette: "👥", bust_in_silhouette: "👤",
  inbox_tray: "📥", outbox_tray: "📤", email: "📧", speech_balloon: "💬", thread: "🧵",
  heavy_minus_sign: "➖", heavy_plus_sign: "➕", grey_question: "❔", satellite: "📡", house: "🏠",
};

const S = {
  state: null, user: null, channel: null, tab: "channel", expanded: new Set(), dismissed: new Set(),
  values: {}, errors: {}, fetching: null, again: false,
};

// ------------------------------------------------------------------ DOM helpers

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function decodeEntities(text) {  // Slack escapes exactly these three; it shows the characters
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function emojify(text) {  // plain_text with emoji: shortcodes Slack knows become the emoji
  return text.replace(/:([a-z0-9_+\-]+):/g, (whole, name) => EMOJI[name] || whole);
}

// ------------------------------------------------------------------ mrkdwn

function mrkdwn(text, parent) {
  const parts = String(text).split("```");
  parts.forEach((part, index) => {
    if (index % 2 === 1 && index < parts.length - 1) {
      parent.append(el("pre", { className: "code-block" }, decodeEntities(part.replace(/^\n/, ""))));
    } else {
      lines(index % 2 === 1 ? "```" + part : part, parent);
    }
  });
  return parent;
}

function lines(text, parent) {
  text.split("\n").forEach((line, index) => {
    const quote = /^(&gt;|>) ?/.exec(line);
    if (quote) {
      parent.append(inline(line.slice(quote[0].length), el("span", { className: "quote" })));
    } else {
      if (index > 0) parent.append(el("br"));
      inline(line, parent);
    }
  });
}

const WORD = /[A-Za-z0-9]/;

function closing(text, mark, start) {
  if (start >= text.length || text[start] === " ") return -1;
  let j = text.indexOf(mark, start);
  while (j > start) {
    if (text[j - 1] !== " " && !(text[j + 1] && WORD.test(text[j + 1]))) return j;
    j = text.indexOf(mark, j + 1);
  }
  return -1;
}

function inline(text, parent) {
  let buffer = "";
  const flush = () => {
    if (buffer) parent.append(document.createTextNode(decodeEntities(buffer)));
    buffer = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "`") {
      const j = text.indexOf("`", i + 1);
      if (j > i + 1) {
        flush();
        parent.append(el("code", {}, decodeEntities(text.slice(i + 1, j))));
        i = j + 1;
        continue;
      }
    } else if (c === "<") {
      const j = text.indexOf(">", i + 1);
      if (j > i + 1) {
        flush();
        parent.append(reference(text.slice(i + 1, j)));
        i = j + 1;
        continue;
      }
    } else if ((c === "*" || c === "_" || c === "~") && (i === 0 || !WORD.test(text[i - 1]))) {
      const j = closing(text, c, i + 1);
      if (j > 0) {
        flush();
        parent.append(inline(text.slice(i + 1, j), el(c === "*" ? "b" : c === "_" ? "i" : "s")));
        i = j + 1;
        continue;
      }
    } else if (c === ":") {
      const m = /^:([a-z0-9_+\-]+):/.exec(text.slice(i));
      if (m && EMOJI[m[1]]) {
        flush();
        parent.append(el("span", { className: "emoji", title: m[0] }, EMOJI[m[1]]));
        i += m[0].length;
        continue;
      }
    }
    buffer += c;
    i += 1;
  }
  flush();
  return parent;
}

function reference(inner) {  // <url|label>, <@U123>, <#C123|name>, <!here>, <!subteam^S1|@team>
  const bar = inner.indexOf("|");
  const target = bar >= 0 ? inner.slice(0, bar) : inner;
  const label = bar >= 0 ? decodeEntities(inner.slice(bar + 1)) : "";
  if (target.startsWith("@")) {
    const id = target.slice(1);
    const name = (S.state && S.state.users[id]) || label || id;
    return el("span", { className: "mention", dataset: { user: id } }, "@" + name);
  }
  if (target.startsWith("#")) return el("span", { className: "mention" }, "#" + (label || target.slice(1)));
  if (target.startsWith("!")) {
    const special = target.slice(1).split("^")[0];
    return el("span", { className: "mention" }, label || "@" + special);
  }
  const url = decodeEntities(target);
  if (/^(https?:|mailto:)/i.test(url)) {
    const link = el("a", { target: "_blank", rel: "noopener noreferrer" }, label || url);
    link.href = url;
    return link;
  }
  return document.createTextNode(label || url);
}

function textObject(obj, className) {
  const node = el("span", { className: className || "" });
  if (!obj) return node;
  if (obj.type === "mrkdwn") return mrkdwn(obj.text || "", node);
  node.textContent = obj.emoji === false ? obj.text || "" : emojify(obj.text || "");
  return node;
}

// ------------------------------------------------------------------ Block Kit

function renderBlocks(blocks, ctx) {
  const box = el("div", { className: "blocks" });
  (blocks || []).forEach((block, index) => box.append(renderBlock(block, index, ctx)));
  return box;
}

function renderBlock(block, index, ctx) {
  const where = { ...ctx, block: index, blockId: block.block_id || "b" + index };
  switch (block.type) {
    case "header":
      return el("div", { className: "block header" }, textObject(block.text));
    case "section": {
      const node = el("div", { className: "block section" });
      const body = el("div", { className: "section-body" });
      if (block.text) body.append(textObject(block.text, "section-text"));
      if (block.fields && block.fields.length) {
        body.append(el("div", { className: "fields" }, block.fields.map((f) => textObject(f, "field"))));
      }
      node.append(body);
      if (block.accessory) node.append(el("div", { className: "accessory" }, renderElement(block.accessory, where)));
      return node;
    }
    case "context":
      return el("div", { className: "block context" }, (block.elements || []).map((e) =>
        e.type === "image" ? image(e, "context-image") : textObject(e)));
    case "divider":
      return el("hr", { className: "block divider" });
    case "actions":
      return el("div", { className: "block actions" }, (block.elements || []).map((e) => renderElement(e, where)));
    case "image":
      return el("figure", { className: "block image" }, block.title ? textObject(block.title, "image-title") : null,
        image(block, "image-main"));
    case "input":
      return renderInput(block, where);
    case "rich_text":
      return el("div", { className: "block rich-text" }, (block.elements || []).map(richElement));
    default:
      return el("div", { className: "block unsupported" }, "This block type (" + String(block.type) + ") is not shown here.");
  }
}

function richElement(element) {
  const kids = (element.elements || []);
  switch (element.type) {
    case "rich_text_list":
      return el(element.style === "ordered" ? "ol" : "ul", {}, kids.map((k) => el("li", {}, richElement(k))));
    case "rich_text_quote":
      return el("blockquote", {}, kids.map(richElement));
    case "rich_text_preformatted":
      return el("pre", { className: "code-block" }, kids.map(richElement));
    case "rich_text_section":
      return el("span", {}, kids.map(richElement));
    case "link": {
      const url = String(element.url || "");
      if (!/^(https?:|mailto:)/i.test(url)) return document.createTextNode(element.text || url);
      const link = el("a", { target: "_blank", rel: "noopener noreferrer" }, element.text || url);
      link.href = url;
      return link;
    }
    case "user":
      return el("span", { className: "mention" }, "@" + ((S.state && S.state.users[element.user_id]) || element.user_id));
    case "emoji":
      return document.createTextNode(EMOJI[element.name] || ":" + element.name + ":");
    default: {
      const style = element.style || {};
      let node = document.createTextNode(String(element.text || ""));
      if (style.code) node = el("code", {}, node);
      if (style.bold) node = el("b", {}, node);
      if (style.italic) node = el("i", {}, node);
      if (style.strike) node = el("s", {}, node);
      return node;
    }
  }
}

function image(obj, className) {
  const img = el("img", { className, alt: obj.alt_text || "" });
  let src = obj.image_url || "";
  if (obj.slack_file) src = obj.slack_file.url || (obj.slack_file.id ? "/files/" + encodeURIComponent(obj.slack_file.id) : "");
  if (/^(https?:|\/files\/)/i.test(src)) img.src = src;
  return img;
}

function options(element) {
  const list = [...(element.options || [])];
  for (const group of element.option_groups || []) list.push(...(group.options || []));
  return list;
}

function renderElement(element, where) {
  const send = (value) => act(where, element, value);
  switch (element.type) {
    case "button": {
      const classes = ["btn"];
      if (element.style) classes.push("btn-" + element.style);
      return el("button", {
        type: "button", className: classes.join(" "),
        dataset: { actionId: element.action_id || "", value: element.value || "" },
        onclick: (event) => {
          if (element.url) {
            window.open(element.url, "_blank", "noopener");
          }
          if (element.confirm) confirmDialog(element.confirm, () => send(undefined));
          else send(undefined);
          event.preventDefault();
        },
      }, textObject(element.text));
    }
    case "static_select":
    case "overflow": {
      const select = el("select", { className: "menu", dataset: { actionId: element.action_id || "" } },
        el("option", { value: "", disabled: true, selected: true },
          element.type === "overflow" ? "⋯" : (element.placeholder ? emojify(element.placeholder.text) : "Select an item")),
        options(element).map((o) => el("option", { value: o.value }, emojify((o.text || {}).text || ""))));
      select.addEventListener("change", () => {
        const value = select.value;
        const go = () => send(value);
        if (element.confirm) confirmDialog(element.confirm, go); else go();
      });
      return select;
    }
    case "image":
      return image(element, "accessory-image");
    default:
      if (where.kind === "view") return renderInputElement(element, where);
      return el("span", { className: "unsupported" }, "[" + String(element.type) + "]");
  }
}

// ------------------------------------------------------------------ modals

function viewValues(viewId) {
  if (!S.values[viewId]) S.values[viewId] = {};
  return S.values[viewId];
}

function setValue(where, element, value) {
  const values = viewValues(where.viewId);
  values[where.blockId] = values[where.blockId] || {};
  values[where.blockId][element.action_id] = value;
}

function initialValue(element) {
  switch (element.type) {
    case "plain_text_input":
      return { type: element.type, value: element.initial_value || null };
    case "static_select":
    case "radio_buttons":
      return { type: element.type, selected_option: element.initial_option || null };
    case "checkboxes":
      return { type: element.type, selected_options: element.initial_options || [] };
    case "datepicker":
      return { type: element.type, selected_date: element.initial_date || null };
    case "users_select":
      return { type: element.type, selected_user: element.initial_user || null };
    default:
      return { type: element.type };
  }
}

function renderInput(block, where) {
  const element = block.element || {};
  const errors = S.errors[where.viewId] || {};
  const node = el("div", { className: "block input", dataset: { blockId: where.blockId } },
    el("label", { className: "input-label" }, textObject(block.label),
      block.optional ? el("span", { className: "optional" }, " (optional)") : null),
    renderInputElement(element, { ...where, dispatch: !!block.dispatch_action }));
  if (block.hint) node.append(textObject(block.hint, "hint"));
  if (errors[where.blockId]) node.append(el("div", { className: "input-error" }, errors[where.blockId]));
  return node;
}

function renderInputElement(element, where) {
  const values = viewValues(where.viewId);
  if (!values[where.blockId] || !values[where.blockId][element.action_id]) setValue(where, element, initialValue(element));
  const current = values[where.blockId][element.action_id];
  const changed = (value, dispatch) => {
    setValue(where, element, value);
    if (dispatch) act(where, element, actionValue(value));
  };
  const id = "in-" + where.blockId + "-" + element.action_id;
  switch (element.type) {
    case "plain_text_input": {
      const input = el(element.multiline ? "textarea" : "input", {
        id, className: "text-input", maxlength: element.max_length, dataset: { actionId: element.action_id },
        placeholder: element.placeholder ? element.placeholder.text : "",
      });
      input.value = current.value || "";
      input.addEventListener("input", () => setValue(where, element, { type: element.type, value: input.value || null }));
      return input;
    }
    case "static_select": {
      const chosen = current.selected_option ? current.selected_option.value : "";
      const select = el("select", { id, className: "menu", dataset: { actionId: element.action_id } },
        el("option", { value: "", disabled: true, selected: !chosen }, element.placeholder ? element.placeholder.text : "Select"),
        options(element).map((o) => el("option", { value: o.value, selected: o.value === chosen }, emojify((o.text || {}).text || ""))));
      select.addEventListener("change", () => {
        const option = options(element).find((o) => o.value === select.value) || null;
        changed({ type: element.type, selected_option: option }, where.dispatch);
      });
      return select;
    }
    case "radio_buttons":
    case "checkboxes": {
      const multiple = element.type === "checkboxes";
      const chosen = multiple ? (current.selected_options || []).map((o) => o.value)
        : [current.selected_option ? current.selected_option.value : null];
      const box = el("div", { id, className: "choices", dataset: { actionId: element.action_id } });
      for (const option of options(element)) {
        const input = el("input", { type: multiple ? "checkbox" : "radio", name: id, value: option.value,
          checked: chosen.includes(option.value) });
        input.addEventListener("change", () => {
          const picked = [...box.querySelectorAll("input")].filter((i) => i.checked).map((i) => i.value);
          const list = options(element).filter((o) => picked.includes(o.value));
          const value = multiple ? { type: element.type, selected_options: list }
            : { type: element.type, selected_option: list[0] || null };
          changed(value, where.dispatch || element.type === "checkboxes" && where.dispatch);
        });
        box.append(el("label", { className: "choice" }, input, textObject(option.text),
          option.description ? textObject(option.description, "choice-hint") : null));
      }
      return box;
    }
    case "datepicker": {
      const input = el("input", { id, type: "date", className: "text-input", dataset: { actionId: element.action_id } });
      input.value = current.selected_date || "";
      input.addEventListener("change", () => changed({ type: element.type, selected_date: input.value || null }, where.dispatch));
      return input;
    }
    case "button":
    case "overflow":
      return renderElement(element, where);
    default:
      return el("span", { className: "unsupported" }, "[" + String(element.type) + "]");
  }
}

function actionValue(value) {
  if (value.selected_option !== undefined) return value.selected_option ? value.selected_option.value : null;
  if (value.selected_options !== undefined) return value.selected_options.map((o) => o.value);
  if (value.selected_date !== undefined) return value.selected_date;
  if (value.selected_user !== undefined) return value.selected_user;
  return value.value;
}

function renderModal(view) {
  const overlay = document.getElementById("overlay");
  overlay.replaceChildren();
  if (!view) {
    if (!overlay.dataset.confirm) overlay.hidden = true;
    return;
  }
  overlay.hidden = false;
  const where = { kind: "view", viewId: view.id };
  const submit = async () => {
    const answer = await post("/ui/submit", { view_id: view.id, values: viewValues(view.id) });
    if (answer && answer.errors) {
      S.errors[view.id] = answer.errors;
      render();
    } else if (answer && answer.ok) {
      delete S.errors[view.id];
    }
  };
  const close = () => post("/ui/close", { view_id: view.id });
  const dialog = el("div", { className: "modal", role: "dialog", "aria-modal": "true", dataset: { viewId: view.id, callbackId: view.callback_id || "" } },
    el("div", { className: "modal-head" }, textObject(view.title, "modal-title"),
      el("button", { type: "button", className: "modal-x", "aria-label": "Close", onclick: close }, "×")),
    el("div", { className: "modal-body" }, renderBlocks(view.blocks, where)),
    el("div", { className: "modal-foot" },
      el("button", { type: "button", className: "btn modal-close", onclick: close }, view.close ? textObject(view.close) : "Cancel"),
      view.submit ? el("button", { type: "button", className: "btn btn-primary modal-submit", onclick: submit }, textObject(view.submit)) : null));
  overlay.append(dialog);
}

function confirmDialog(confirm, onConfirm) {
  const overlay = document.getElementById("overlay");
  const layer = el("div", { className: "confirm-layer" });
  const done = () => { layer.remove(); delete overlay.dataset.confirm; if (!overlay.querySelector(".modal")) overlay.hidden = true; };
  const yes = el("button", { type: "button", className: "btn confirm-yes " + (confirm.style === "danger" ? "btn-danger" : "btn-primary"),
    onclick: () => { done(); onConfirm(); } }, textObject(confirm.confirm) );
  layer.append(el("div", { className: "modal confirm", role: "alertdialog" },
    el("div", { className: "modal-head" }, textObject(confirm.title, "modal-title")),
    el("div", { className: "modal-body" }, textObject(confirm.text)),
    el("div", { className: "modal-foot" },
      el("button", { type: "button", className: "btn confirm-no", onclick: done }, textObject(confirm.deny)), yes)));
  overlay.dataset.confirm = "1";
  overlay.hidden = false;
  overlay.append(layer);
}

// ------------------------------------------------------------------ messages

function time(ts) {
  const date = new Date(parseFloat(ts) * 1000);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderMessage(message, channel, options) {
  const ctx = { kind: "message", channel, ts: message.ts, ephemeral: !!options.ephemeral };
  // a bot's message (ephemeral ones carry their recipient in `user`) shows the bot as its author
  const author = message.bot_id || !message.user ? "esm-bot" : (S.state.users[message.user] || message.user);
  const node = el("article", {
    className: "message" + (options.ephemeral ? " ephemeral" : "") + (options.reply ? " reply" : ""),
    dataset: { ts: message.ts, channel },
  });
  const head = el("div", { className: "message-head" },
    el("span", { className: "author" }, author),
    message.bot_id ? el("span", { className: "app-badge" }, "APP") : null,
    el("span", { className: "time", title: message.ts }, time(message.ts)),
    message.edited ? el("span", { className: "edited" }, "(edited)") : null);
  const body = el("div", { className: "message-body" }, head);
  if (options.ephemeral) {
    body.append(el("div", { className: "only-you" }, "👁 Only visible to you ",
      el("button", { type: "button", className: "link dismiss", onclick: () => { S.dismissed.add(message.ts); render(); } }, "Dismiss")));
  }
  if (message.blocks && message.blocks.length) body.append(renderBlocks(message.blocks, ctx));
  else body.append(mrkdwn(message.text || "", el("div", { className: "message-text" })));
  node.append(el("div", { className: "avatar", "aria-hidden": "true" }, author.slice(0, 1).toUpperCase()), body);
  return node;
}

function renderChannel(channel) {
  const box = document.getElementById("messages");
  box.replaceChildren();
  if (!channel) {
    box.append(el("p", { className: "empty" }, "No messages yet. Press “Send DBSQL alert” to have the bot look for findings."));
    return;
  }
  const ephemerals = channel.ephemerals.filter((e) => !S.dismissed.has(e.ts));
  const inThread = (ts) => ephemerals.filter((e) => e.thread_ts === ts);
  const items = [
    ...channel.messages.map((m) => ({ ts: m.ts, node: messageWithThread(m, channel.id, inThread(m.ts)) })),
    ...ephemerals.filter((e) => !e.thread_ts || !channel.messages.some((m) => m.ts === e.thread_ts))
      .map((e) => ({ ts: e.ts, node: renderMessage(e, channel.id, { ephemeral: true }) })),
  ];
  items.sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
  for (const item of items) box.append(item.node);
  if (!items.length) box.append(el("p", { className: "empty" }, "No messages in this channel yet."));
}

function messageWithThread(message, channelId, ephemerals) {
  const wrap = el("div", { className: "thread-wrap", dataset: { ts: message.ts } }, renderMessage(message, channelId, {}));
  const replies = message.replies || [];
  const count = replies.length + ephemerals.length;
  if (!count) return wrap;
  const open = S.expanded.has(message.ts);
  wrap.append(el("button", {
    type: "button", className: "link thread-toggle", "aria-expanded": String(open),
    onclick: () => { if (open) S.expanded.delete(message.ts); else S.expanded.add(message.ts); render(); },
  }, open ? "Hide replies" : (replies.length === 1 ? "1 reply" : replies.length + " replies") +
    (ephemerals.length ? " · " + ephemerals.length + " only for you" : "")));
  if (open) {
    const items = [
      ...replies.map((r) => ({ ts: r.ts, node: renderMessage(r, channelId, { reply: true }) })),
      ...ephemerals.map((e) => ({ ts: e.ts, node: renderMessage(e, channelId, { reply: true, ephemeral: true }) })),
    ].sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
    wrap.append(el("div", { className: "thread" }, items.map((i) => i.node)));
  }
  return wrap;
}

function renderHome() {
  const box = document.getElementById("home");
  box.replaceChildren();
  const home = S.state.home;
  if (!home) {
    box.append(el("p", { className: "empty" }, "esm-bot has not published a Home tab for you yet."));
    return;
  }
  box.append(el("div", { className: "home-view" }, renderBlocks(home.blocks, { kind: "home", viewId: home.id })));
}

// ------------------------------------------------------------------ the page

function render() {
  const state = S.state;
  if (!state) return;
  const acting = document.getElementById("acting");
  if (acting.options.length !== state.acting.length) {
    acting.replaceChildren(...state.acting.map((u) => el("option", { value: u.id }, u.name + " (" + u.id + ")")));
  }
  acting.value = S.user;
  document.getElementById("send-alert").hidden = !state.hooks.includes("send_alert");
  document.getElementById("load-events-label").hidden = !state.hooks.includes("load_events");
  if (!S.channel || !state.channels.some((c) => c.id === S.channel)) S.channel = state.channels.length ? state.channels[0].id : null;
  const channels = document.getElementById("channels");
  channels.replaceChildren(...state.channels.map((c) => el("button", {
    type: "button", className: "nav-item" + (S.tab === "channel" && c.id === S.channel ? " active" : ""),
    onclick: () => { S.channel = c.id; S.tab = "channel"; render(); },
  }, "# " + c.id.toLowerCase())));
  document.getElementById("apps").replaceChildren(el("button", {
    type: "button", id: "open-home", className: "nav-item" + (S.tab === "home" ? " active" : ""), onclick: openHome,
  }, "🏠 esm-bot"));
  const home = S.tab === "home";
  document.getElementById("title").textContent = home ? "esm-bot · Home" : "#" + (S.channel || "").toLowerCase();
  document.getElementById("messages").hidden = home;
  document.getElementById("composer").hidden = home;
  document.getElementById("home").hidden = !home;
  if (home) renderHome();
  else renderChannel(state.channels.find((c) => c.id === S.channel));
  const views = state.views || [];
  const top = views.length ? views[views.length - 1] : null;
  const shown = document.querySelector("#overlay .modal[data-view-id]");
  // a modal being typed in is only redrawn when the app changed it (a new view or a new hash)
  if (!shown || !top || shown.dataset.viewId !== top.id || shown.dataset.hash !== top.hash || S.errorsChanged) {
    renderModal(top);
    const drawn = document.querySelector("#overlay .modal[data-view-id]");
    if (drawn && top) drawn.dataset.hash = top.hash;
    S.errorsChanged = false;
  }
}

async function refresh() {
  if (S.fetching) { S.again = true; return S.fetching; }
  S.fetching = (async () => {
    try {
      const response = await fetch("/ui/state?user=" + encodeURIComponent(S.user || ""), { cache: "no-store" });
      if (response.ok) {
        S.state = await response.json();
        if (!S.user) S.user = S.state.user;
        render();
      }
    } finally {
      S.fetching = null;
      if (S.again) { S.again = false; refresh(); }
    }
  })();
  return S.fetching;
}

function toast(text, bad) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.className = bad ? "bad" : "";
  box.hidden = false;
  clearTimeout(S.toastTimer);
  S.toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

async function post(path, body) {
  let answer;
  try {
    const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: S.user, ...body }) });
    answer = await response.json();
  } catch (error) {
    toast("The Slack stand-in did not answer: " + error, true);
    return null;
  }
  if (!answer.ok) toast(answer.error || "failed", true);
  if (answer.errors) S.errorsChanged = true;
  return answer;
}

function act(where, element, value) {
  const body = { block: where.block, action_id: element.action_id, value };
  if (where.kind === "view") Object.assign(body, { view_id: where.viewId, values: viewValues(where.viewId) });
  else if (where.kind === "home") { toast("Buttons on the Home tab are not wired in this demo", true); return null; }
  else Object.assign(body, { channel: where.channel, ts: where.ts, ephemeral: where.ephemeral });
  return post("/ui/action", body);
}

async function openHome() {
  S.tab = "home";
  render();
  await post("/ui/home_opened", {});
}

async function hook(name, body) {
  try {
    const response = await fetch("/ui/hook/" + name, { method: "POST", body });
    const answer = await response.json();
    toast(answer.ok ? answer.message : answer.error, !answer.ok);
  } catch (error) {
    toast("The Slack stand-in did not answer: " + error, true);
  }
}

function start() {
  const params = new URLSearchParams(location.search);
  S.user = params.get("as");
  if (params.get("channel")) S.channel = params.get("channel");
  if (params.get("tab") === "home") S.tab = "home";
  document.getElementById("acting").addEventListener("change", (event) => {
    S.user = event.target.value;
    S.values = {};
    refresh();
  });
  document.getElementById("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = document.getElementById("message-box");
    const text = box.value.trim();
    if (!text) return;
    if (!text.startsWith("/")) { toast("Only slash commands reach the app here: try /esm help", true); return; }
    box.value = "";
    await post("/ui/command", { channel: S.channel, text });
  });
  document.getElementById("send-alert").addEventListener("click", () => hook("send_alert", ""));
  document.getElementById("load-events").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await hook("load_events", await file.arrayBuffer());
    event.target.value = "";
  });
  const live = document.getElementById("live");
  const events = new EventSource("/ui/events");
  events.addEventListener("version", (event) => {
    live.textContent = "● live";
    live.className = "on";
    if (!S.state || String(S.state.version) !== event.data) refresh();
  });
  events.onerror = () => { live.textContent = "○ reconnecting…"; live.className = ""; };
  refresh().then(() => { if (S.tab === "home") openHome(); });
}

start();
