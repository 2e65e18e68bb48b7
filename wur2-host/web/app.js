// The WUR2 web client: one page, plain JavaScript, no dependencies. It speaks the server's
// JSON lines mode over a WebSocket (docs/PROTOCOL.md): each text frame it sends is one
// command line, each text frame it gets one JSON object; upload bytes go in binary frames.
//
// Safety rule: text that comes from the server (names, messages, file names, reasons) is
// only ever put into the page with textContent or as an attribute value, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const UPLOAD_SLICE = 64 * 1024;
  const UPLOAD_BUFFER = 1024 * 1024;
  const PAGE = 50;

  const state = {
    socket: null,
    user: null,
    token: null,
    password: null,
    channel: null,
    view: null,
    views: new Map(),
    channels: [],
    transfers: new Map(),
    retry: 0,
    reconnect: true,
    // Whether this connection is logged in (a reconnect logs in again).
    loggedIn: false,
    showChannels: false,
    pings: 0,
    waiting: new Map(),
    // Where the message list was last seen scrolled to, by its scroll events or by the
    // page itself: a scroll up from there to the top loads older messages.
    scrolledTo: 0,
  };

  // ----- views: one per channel and per private conversation -----

  function viewKey(kind, name) {
    return kind + ":" + name.toLowerCase();
  }

  function getView(kind, name) {
    const key = viewKey(kind, name);
    let view = state.views.get(key);
    if (!view) {
      view = { key, kind, name, items: [], ids: new Set(), unread: 0, oldest: null, more: false, end: false, loading: false, loaded: false, page: [] };
      state.views.set(key, view);
      if (kind === "dm") renderConversations();
    }
    return view;
  }

  function showView(view) {
    state.view = view;
    view.unread = 0;
    $("view-title").textContent = view.kind === "dm" ? "@" + view.name : view.name;
    $("file-button").hidden = view.kind !== "dm";
    renderMessages();
    renderChannels();
    renderConversations();
    if (view.kind === "dm" && !view.loaded) {
      view.loaded = true;
      loadOlder(view, true);
    }
    closeMenu();
  }

  // ----- rendering -----

  function colourOf(name) {
    let hash = 0;
    for (const ch of name.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return "hsl(" + (hash % 360) + ", 60%, 38%)";
  }

  function timeText(ms) {
    const at = new Date(typeof ms === "number" ? ms : Date.now());
    const today = new Date();
    const hhmm = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (at.toDateString() === today.toDateString()) return hhmm;
    return at.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + hhmm;
  }

  function itemElement(item) {
    const li = document.createElement("li");
    if (item.id) li.dataset.id = item.id;
    const time = document.createElement("time");
    const at = new Date(item.at);
    time.dateTime = at.toISOString();
    time.textContent = timeText(item.at);
    li.append(time);
    if (item.from) {
      const who = document.createElement("span");
      who.className = "who";
      who.style.color = colourOf(item.from);
      who.textContent = item.from;
      li.append(who);
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = item.text;
      li.append(text);
    } else {
      const text = document.createElement("span");
      text.className = item.refusal ? "notice refusal" : "notice";
      text.textContent = item.text;
      li.append(text);
    }
    if (item.node) li.append(item.node);
    return li;
  }

  function renderMessages() {
    const list = $("messages");
    list.replaceChildren();
    const view = state.view;
    if (!view) return;
    for (const item of view.items) list.append(itemElement(item));
    renderOlder();
    scrollMessages(list.scrollHeight);
  }

  // Scrolls the message list and remembers where to, so that the reader's scroll to the
  // top right after (before the browser has sent this scroll's event) still loads older
  // messages.
  function scrollMessages(top) {
    const list = $("messages");
    list.scrollTop = top;
    state.scrolledTo = list.scrollTop;
  }

  // The button at the top of the current view that loads the page before it (scrolling
  // to the top does the same), while older messages may exist.
  function renderOlder() {
    const list = $("messages");
    const view = state.view;
    const present = $("older");
    const wanted = view && !view.end && view.oldest;
    if (present && !wanted) present.parentElement.remove();
    if (!wanted || present) return;
    const more = document.createElement("li");
    more.className = "more";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.id = "older";
    button.textContent = "Older messages";
    button.addEventListener("click", () => loadOlder(state.view, false));
    more.append(button);
    list.prepend(more);
  }

  function add(view, item, { prepend = false } = {}) {
    if (item.id) {
      if (view.ids.has(item.id)) return;
      view.ids.add(item.id);
    }
    if (prepend) view.items.unshift(item);
    else view.items.push(item);
    if (item.id && (prepend || !view.oldest)) view.oldest = item.id;
    if (view !== state.view) {
      if (item.from && view.kind === "dm" && item.from !== state.user) {
        view.unread += 1;
        renderConversations();
      }
      return;
    }
    if (prepend) return;
    renderOlder();
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(itemElement(item));
    if (atBottom || item.from === state.user) scrollMessages(list.scrollHeight);
  }

  function notice(text, { refusal = false, view = state.view } = {}) {
    if (!view) return;
    add(view, { at: Date.now(), text, refusal });
  }

  function roomButton(label, extra, current, onClick) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const name = document.createElement("span");
    name.textContent = label;
    button.append(name);
    if (extra) button.append(extra);
    if (current) button.setAttribute("aria-current", "true");
    button.addEventListener("click", onClick);
    li.append(button);
    return li;
  }

  function renderChannels() {
    const list = $("channels");
    list.replaceChildren();
    for (const channel of state.channels) {
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(channel.members);
      count.setAttribute("aria-label", channel.members + " members");
      const current = state.view && state.view.kind === "channel" && state.view.name.toLowerCase() === channel.name.toLowerCase();
      const li = roomButton(channel.name, count, current, () => joinChannel(channel.name));
      li.firstChild.dataset.channel = channel.name;
      if (channel.topic) li.firstChild.title = channel.topic;
      list.append(li);
    }
  }

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren();
    for (const view of state.views.values()) {
      if (view.kind !== "dm") continue;
      let badge = null;
      if (view.unread > 0) {
        badge = document.createElement("span");
        badge.className = "unread";
        badge.textContent = String(view.unread);
        badge.setAttribute("aria-label", view.unread + " unread");
      }
      const li = roomButton("@" + view.name, badge, state.view === view, () => showView(view));
      li.firstChild.dataset.user = view.name;
      list.append(li);
    }
  }

  function setStatus(text, down) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("down", Boolean(down));
  }

  // ----- the connection -----

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.binaryType = "arraybuffer";
    state.socket = socket;
    setStatus(state.retry ? "reconnecting…" : "connecting…");
    socket.addEventListener("open", () => {
      state.retry = 0;
      setStatus("connected");
      if (state.user && state.token) {
        send("/resume " + state.user + " " + state.token);
      } else if (state.pendingUser && state.password) {
        send("/login " + state.pendingUser + " " + state.password);
      } else {
        showLogin();
      }
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      handle(message);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      state.loggedIn = false;
      for (const transfer of state.transfers.values()) failTransfer(transfer, "the connection closed");
      const why = event.reason ? event.reason + " (" + event.code + ")" : "connection lost";
      if (!state.reconnect) {
        setStatus("disconnected: " + why, true);
        return;
      }
      const delay = Math.min(5000, 500 * 2 ** state.retry);
      state.retry += 1;
      setStatus("disconnected: " + why + "; reconnecting…", true);
      if (event.code === 1009 || event.code === 1003 || event.code === 1007 || event.code === 1008) {
        notice("The server closed the connection: " + why, { refusal: true });
      }
      setTimeout(connect, delay);
    });
  }

  function send(line) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      notice("Not connected; try again in a moment.", { refusal: true });
      return false;
    }
    state.socket.send(line);
    return true;
  }

  // Runs `then` once everything sent before it is answered.
  function barrier(then) {
    state.pings += 1;
    const token = "web-" + state.pings;
    state.waiting.set(token, then);
    send("/ping " + token);
  }

  // ----- what the server says -----

  function handle(m) {
    const at = m.ts || Date.now();
    switch (m.type) {
      case "info":
        if (!state.user) $("banner").textContent = m.text;
        else notice(m.text);
        break;
      case "prompt":
        break;
      case "welcome":
        state.loggedIn = true;
        state.user = m.user;
        state.password = null;
        $("password").value = "";
        $("login").hidden = true;
        $("chat").hidden = false;
        setStatus("connected as " + m.user);
        if (!state.token) send("/token");
        send("/channels");
        break;
      case "token":
        state.token = m.token;
        break;
      case "channel": {
        const rejoin = state.channel;
        setChannel(m.channel);
        if (rejoin && rejoin.toLowerCase() !== m.channel.toLowerCase()) send("/join " + rejoin);
        break;
      }
      case "switched":
        setChannel(m.to);
        send("/channels");
        break;
      case "message":
        add(getView("channel", m.channel), { at, from: m.from, text: m.text, id: m.id });
        break;
      case "history":
        older(getView("channel", m.channel), { at: m.sent_at, from: m.from, text: m.text, id: m.id });
        break;
      case "dm_history":
        older(getView("dm", m.with), { at: m.sent_at, from: m.from, text: m.text, id: m.id });
        break;
      case "history_more": {
        const view = m.with ? getView("dm", m.with) : state.channel && getView("channel", state.channel);
        if (view) view.more = true;
        break;
      }
      case "dm": {
        const view = getView("dm", m.from);
        add(view, { at: m.sent_at || at, from: m.from, text: m.text, id: m.id });
        break;
      }
      case "dm_stored":
        notice(m.to + " is offline; they get the message at their next login.", { view: getView("dm", m.to) });
        break;
      case "join":
        notice(m.user + " joined " + m.channel, { view: getView("channel", m.channel) });
        send("/channels");
        break;
      case "part":
        notice(m.user + " left " + m.channel, { view: getView("channel", m.channel) });
        send("/channels");
        break;
      case "channels":
        state.channels = m.channels;
        renderChannels();
        if (state.showChannels) {
          state.showChannels = false;
          notice("Channels: " + m.channels.map((c) => c.name + " (" + c.members + ")").join(", "));
        }
        break;
      case "list":
        notice("Online: " + m.users.join(", "));
        break;
      case "names":
        notice("In " + m.channel + ": " + m.users.join(", "));
        break;
      case "profile":
        notice("You are " + m.user + " in " + m.channel + ", role " + m.role);
        break;
      case "help":
        notice("Commands:");
        for (const [usage, description] of m.commands) notice(usage + " — " + description);
        break;
      case "pong": {
        const then = state.waiting.get(m.token);
        if (then) {
          state.waiting.delete(m.token);
          then();
        } else {
          notice("PONG " + m.token);
        }
        break;
      }
      case "topic":
        if (m.by) notice(m.by + (m.topic ? " set the topic: " + m.topic : " cleared the topic"));
        else notice(m.topic ? "Topic of " + m.channel + ": " + m.topic : m.channel + " has no topic");
        break;
      case "error":
        refused(m.message, m.code);
        break;
      case "file_offer":
        incoming(m);
        break;
      case "file_sending":
        sending(m);
        break;
      case "file_chunk":
        chunk(m);
        break;
      case "file_done":
        done(m);
        break;
      case "file_cancelled": {
        const transfer = state.transfers.get(m.id);
        if (transfer) failTransfer(transfer, m.reason);
        break;
      }
      case "kicked":
        state.reconnect = false;
        notice("You were kicked by " + m.by + ": " + m.reason, { refusal: true });
        break;
      case "banned":
        state.reconnect = false;
        notice("You are banned by " + m.by + ": " + m.reason, { refusal: true });
        break;
      case "logged_out":
        state.reconnect = false;
        state.token = null;
        notice("You were logged out: " + m.reason, { refusal: true });
        break;
      case "goodbye":
        state.reconnect = false;
        notice("Goodbye!");
        break;
      case "shutdown":
        notice("The server is restarting; this page reconnects by itself.", { refusal: true });
        break;
      default:
        notice(describe(m));
    }
  }

  // Anything without a rendering of its own, as readable as the fields allow.
  function describe(m) {
    const parts = [];
    for (const [key, value] of Object.entries(m)) {
      if (key === "type" || key === "ts") continue;
      parts.push(key + ": " + (typeof value === "object" ? JSON.stringify(value) : String(value)));
    }
    return m.type.replace(/_/g, " ") + (parts.length ? " — " + parts.join(", ") : "");
  }

  function refused(message, code) {
    if (code === "invalid_credentials" && state.token && !state.loggedIn) {
      // A revoked or expired resume token (after a reconnect): ask for the password again.
      state.token = null;
      state.user = null;
      showLogin();
      $("login-error").textContent = "Please log in again: " + message;
      return;
    }
    if (!state.user || !$("login").hidden) {
      $("login-error").textContent = message;
      return;
    }
    notice(message, { refusal: true });
  }

  function setChannel(name) {
    state.channel = name;
    const view = getView("channel", name);
    if (!state.view || state.view.kind === "channel") showView(view);
    else renderChannels();
  }

  // A history line: collected for a page being loaded, else (the replay after a join)
  // added in order.
  function older(view, item) {
    if (view.loading) view.page.push(item);
    else add(view, item);
  }

  function loadOlder(view, first) {
    if (view.loading) return;
    if (!first && (view.end || !view.oldest)) return;
    view.loading = true;
    view.page = [];
    view.more = false;
    const target = view.kind === "dm" ? "@" + view.name + " " : "";
    const before = !first && view.oldest ? " before " + view.oldest : "";
    if (view.kind === "channel" && view.name.toLowerCase() !== (state.channel || "").toLowerCase()) {
      view.loading = false;
      return;
    }
    send("/history " + target + PAGE + before);
    barrier(() => {
      view.loading = false;
      const list = $("messages");
      const height = list.scrollHeight;
      const page = view.page;
      view.page = [];
      if (!view.more) view.end = true;
      for (let i = page.length - 1; i >= 0; i -= 1) add(view, page[i], { prepend: true });
      if (view === state.view) {
        renderMessages();
        if (!first) scrollMessages(list.scrollHeight - height);
      }
    });
  }

  // ----- files -----

  function transferRow(text) {
    const row = document.createElement("div");
    row.className = "transfer";
    const label = document.createElement("span");
    label.textContent = text;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    row.append(label, bar);
    $("transfers").append(row);
    return { row, label, bar };
  }

  function failTransfer(transfer, reason) {
    state.transfers.delete(transfer.id);
    if (transfer.ui) transfer.ui.row.remove();
    notice("File " + transfer.name + " cancelled: " + reason, { refusal: true, view: transfer.view });
  }

  function safeFileName(name) {
    let safe = name.replace(/[\s/\\\u0000-\u001f\u007f]+/g, "_");
    while (new TextEncoder().encode(safe).length > 255) safe = safe.slice(0, -1);
    return safe || "file";
  }

  async function upload(file, to) {
    const name = safeFileName(file.name);
    const view = getView("dm", to);
    if (!send("/send " + to + " " + name + " " + file.size)) return;
    const ui = transferRow("Sending " + name + " to " + to);
    const socket = state.socket;
    let sent = 0;
    while (sent < file.size) {
      if (state.socket !== socket) {
        ui.row.remove();
        notice("Upload of " + name + " stopped: the connection closed", { refusal: true, view });
        return;
      }
      while (socket.bufferedAmount > UPLOAD_BUFFER) await new Promise((r) => setTimeout(r, 20));
      const slice = await file.slice(sent, sent + UPLOAD_SLICE).arrayBuffer();
      socket.send(slice);
      sent += slice.byteLength;
      ui.bar.value = file.size ? (sent - socket.bufferedAmount) / file.size : 1;
    }
    const settle = () => {
      ui.bar.value = file.size ? (file.size - socket.bufferedAmount) / file.size : 1;
      if (socket.bufferedAmount > 0 && state.socket === socket) setTimeout(settle, 50);
      else ui.row.remove();
    };
    settle();
  }

  function sending(m) {
    state.transfers.set(m.id, { id: m.id, name: m.name, outgoing: true, view: getView("dm", m.to) });
  }

  function incoming(m) {
    const view = getView("dm", m.from);
    const transfer = { id: m.id, name: m.name, size: m.size, from: m.from, parts: [], received: 0, view };
    transfer.ui = transferRow("Receiving " + m.name + " from " + m.from);
    state.transfers.set(m.id, transfer);
    notice(m.from + " is sending " + m.name + " (" + m.size + " bytes)", { view });
  }

  function chunk(m) {
    const transfer = state.transfers.get(m.id);
    if (!transfer || transfer.outgoing) return;
    const binary = atob(m.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    transfer.parts.push(bytes);
    transfer.received += bytes.length;
    transfer.ui.bar.value = transfer.size ? transfer.received / transfer.size : 1;
  }

  function done(m) {
    const transfer = state.transfers.get(m.id);
    if (!transfer) return;
    state.transfers.delete(m.id);
    if (transfer.outgoing) {
      notice("Sent " + transfer.name + " to " + m.to, { view: transfer.view });
      return;
    }
    transfer.ui.row.remove();
    const blob = new Blob(transfer.parts, { type: "application/octet-stream" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = transfer.name;
    link.className = "download";
    link.dataset.size = String(blob.size);
    link.textContent = "Download " + transfer.name + " (" + blob.size + " bytes)";
    add(transfer.view, { at: Date.now(), text: transfer.from + " sent a file: ", node: link });
  }

  // ----- what the user does -----

  function joinChannel(name) {
    const view = getView("channel", name);
    if (state.channel && state.channel.toLowerCase() === name.toLowerCase()) showView(view);
    else {
      state.view = view;
      send("/join " + name);
    }
    closeMenu();
  }

  function submit(text) {
    if (!text.trim()) return;
    const view = state.view;
    if (text.startsWith("/") && !text.startsWith("//")) {
      const [command, ...rest] = text.slice(1).split(" ");
      if (command === "channels") state.showChannels = true;
      if (command === "msg" && rest.length >= 2) {
        const to = rest[0];
        const message = rest.slice(1).join(" ");
        if (send(text)) add(getView("dm", to), { at: Date.now(), from: state.user, text: message });
        return;
      }
      if (command === "close" || command === "quit") state.reconnect = false;
      send(text);
      return;
    }
    const shown = text.startsWith("//") ? text.slice(1) : text;
    if (view && view.kind === "dm") {
      if (send("/msg " + view.name + " " + shown)) add(view, { at: Date.now(), from: state.user, text: shown });
    } else if (send(text)) {
      add(view || getView("channel", state.channel), { at: Date.now(), from: state.user, text: shown });
    }
  }

  function showLogin() {
    $("chat").hidden = true;
    $("login").hidden = false;
    $("username").focus();
  }

  function closeMenu() {
    $("side").classList.remove("open");
    $("menu").setAttribute("aria-expanded", "false");
  }

  function credentials(register) {
    const user = $("username").value.trim();
    const password = $("password").value;
    if (!$("login-form").reportValidity()) return;
    $("login-error").textContent = "";
    state.reconnect = true;
    state.user = null;
    state.token = null;
    state.views.clear();
    // Kept only until the welcome, so a login interrupted by a restart can be retried.
    state.password = register ? null : password;
    state.pendingUser = user;
    send((register ? "/register " : "/login ") + user + " " + password);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      credentials(false);
    });
    $("register-button").addEventListener("click", () => credentials(true));
    $("send-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("input");
      const text = input.value;
      input.value = "";
      submit(text);
    });
    $("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("join-name").value.trim();
      $("join-name").value = "";
      if (name) joinChannel(name);
    });
    $("dm-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("dm-name").value.trim();
      $("dm-name").value = "";
      if (name) showView(getView("dm", name));
    });
    $("file-button").addEventListener("click", () => $("file").click());
    $("file").addEventListener("change", () => {
      const file = $("file").files[0];
      if (file && state.view && state.view.kind === "dm") upload(file, state.view.name);
      $("file").value = "";
    });
    // Older messages load when the reader scrolls up to the top (not when new lines
    // scroll a barely full list down).
    $("messages").addEventListener("scroll", () => {
      const top = $("messages").scrollTop;
      if (top < 30 && top < state.scrolledTo && state.view) loadOlder(state.view, false);
      state.scrolledTo = top;
    });
    $("menu").addEventListener("click", () => {
      const open = $("side").classList.toggle("open");
      $("menu").setAttribute("aria-expanded", String(open));
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeMenu();
      if (event.key === "PageUp" && state.view && document.activeElement === $("input")) {
        $("messages").scrollTop -= $("messages").clientHeight;
      }
    });
    setInterval(() => {
      if (state.user && state.socket && state.socket.readyState === WebSocket.OPEN) send("/channels");
    }, 15000);
    connect();
  });
})();
