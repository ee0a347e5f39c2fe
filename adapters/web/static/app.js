// The web chat page: sends questions over the socket, grows answers in place, restores the
// conversation on reload, and drives the settings form. Answer HTML arrives already sanitized by
// the server (adapters/web_markdown.py); everything else is set with textContent only.
"use strict";

(function () {
  const STORAGE_KEY = "answerbot.conversation";
  const API_HEADERS = { "X-Answerbot": "1", "Content-Type": "application/json" };
  const RECONNECT_FIRST_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const ANSWERING_POLL_MS = 2000;
  const STICK_TO_BOTTOM_PX = 80;

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const welcome = $("welcome");
  const form = $("composer");
  const question = $("question");
  const send = $("send");
  const chatError = $("chat-error");
  const connection = $("connection");
  const settings = $("settings");
  const keyForm = $("key-form");
  const keyInput = $("api-key");
  const keyStatus = $("key-status");
  const keyError = $("key-error");
  const keyBanner = $("key-banner");
  const suggestions = $("suggestions");

  let conversation = localStorage.getItem(STORAGE_KEY) || newConversationId();
  localStorage.setItem(STORAGE_KEY, conversation);
  let socket = null;
  let reconnectDelay = RECONNECT_FIRST_MS;
  let pollTimer = null;
  const busy = new Set(); // conversations with an answer in flight from this page
  const bubbles = new Map(); // message id from the server -> its element

  function newConversationId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- rendering ---------------------------------------------------------------------------

  function nearBottom() {
    const el = document.scrollingElement;
    return el.scrollHeight - el.scrollTop - el.clientHeight < STICK_TO_BOTTOM_PX;
  }

  function scrollToEnd(force) {
    if (force || nearBottom()) window.scrollTo({ top: document.body.scrollHeight });
  }

  function addBubble(role) {
    welcome.hidden = true;
    const item = document.createElement("article");
    item.className = "message " + role;
    const who = document.createElement("h3");
    who.className = "visually-hidden";
    who.textContent = role === "user" ? "You asked" : "Answer";
    const body = document.createElement("div");
    body.className = role === "user" ? "body" : "body markdown";
    item.append(who, body);
    log.append(item);
    return item;
  }

  function addQuestion(text) {
    const item = addBubble("user");
    item.querySelector(".body").textContent = text;
    return item;
  }

  function fillAnswer(item, entry) {
    const stick = nearBottom();
    // Server-rendered by markdown-it with raw HTML escaped and links restricted: safe markup.
    item.querySelector(".body").innerHTML = entry.html;
    let list = item.querySelector(".sources");
    if (entry.sources && entry.sources.length) {
      if (!list) {
        list = document.createElement("section");
        list.className = "sources";
        const title = document.createElement("h4");
        title.textContent = "Sources";
        list.append(title, document.createElement("ul"));
        item.append(list);
      }
      const ul = list.querySelector("ul");
      ul.replaceChildren(
        ...entry.sources.map((label) => {
          const li = document.createElement("li");
          const match = /^\[(\d+)\]\s*(.*)$/.exec(label);
          if (match) {
            const number = document.createElement("span");
            number.className = "source-number";
            number.textContent = match[1];
            const text = document.createElement("span");
            text.textContent = match[2];
            li.append(number, text);
          } else {
            li.textContent = label;
          }
          return li;
        }),
      );
    } else if (list) {
      list.remove();
    }
    if (entry.note) {
      item.classList.add("failed");
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = entry.note;
      item.append(note);
    }
    if (stick) scrollToEnd(true);
  }

  function addFeedback(item, answerId, current) {
    const bar = document.createElement("div");
    bar.className = "feedback";
    const choices = [
      [1, "thumb-up", "Helpful"],
      [-1, "thumb-down", "Not helpful"],
    ];
    const forConversation = conversation;
    for (const [value, icon, label] of choices) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button button-icon";
      button.title = label;
      const glyph = document.createElement("span");
      glyph.className = "icon icon-" + icon;
      glyph.setAttribute("aria-hidden", "true");
      button.append(glyph);
      button.setAttribute("aria-label", label);
      button.setAttribute("aria-pressed", String(current === value));
      button.addEventListener("click", async () => {
        const result = await api("POST", "/api/feedback", {
          conversation: forConversation,
          answer_id: answerId,
          value,
        });
        if (result.error) {
          showChatError(result.error);
        } else {
          for (const other of bar.querySelectorAll("button")) {
            other.setAttribute("aria-pressed", String(other === button));
          }
        }
      });
      bar.append(button);
    }
    item.append(bar);
  }

  function setBusy(on) {
    log.setAttribute("aria-busy", String(on));
    send.disabled = on;
  }

  function showChatError(message) {
    chatError.textContent = message;
    chatError.hidden = !message;
  }

  // -- the socket --------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    socket.addEventListener("open", () => {
      const wasDown = reconnectDelay !== RECONNECT_FIRST_MS;
      reconnectDelay = RECONNECT_FIRST_MS;
      connection.textContent = "";
      document.body.dataset.connected = "true";
      // Frames sent while the page was away are gone; the stored thread is the truth.
      if (wasDown) loadHistory();
    });
    socket.addEventListener("message", (event) => onFrame(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      document.body.dataset.connected = "false";
      connection.textContent = "Reconnecting…";
      busy.clear();
      setBusy(false);
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    });
  }

  function onFrame(frame) {
    if (frame.type === "error") {
      if (!frame.conversation || frame.conversation === conversation) {
        showChatError(frame.message);
      }
      if (frame.conversation) busy.delete(frame.conversation);
      setBusy(busy.has(conversation));
      return;
    }
    if (frame.conversation !== conversation) return; // an answer for a chat left behind
    let item = bubbles.get(frame.id);
    if (frame.type === "post" || !item) {
      if (frame.type !== "post") return;
      // A long answer continues in a new message; the earlier ones are complete.
      for (const done of log.querySelectorAll(".message.streaming")) {
        done.classList.remove("streaming");
      }
      item = addBubble("assistant");
      item.dataset.messageId = frame.id;
      bubbles.set(frame.id, item);
    }
    fillAnswer(item, frame);
    item.classList.toggle("streaming", !frame.final);
    if (frame.final) {
      busy.delete(frame.conversation);
      setBusy(busy.has(conversation));
      if (frame.answer_id !== null && frame.answer_id !== undefined) {
        item.dataset.answerId = String(frame.answer_id);
        addFeedback(item, frame.answer_id, null);
      }
    }
  }

  function ask() {
    const text = question.value.trim();
    if (!text || busy.has(conversation)) return;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      showChatError("Not connected to the bot yet; try again in a moment.");
      return;
    }
    showChatError("");
    addQuestion(text);
    scrollToEnd(true);
    socket.send(JSON.stringify({ type: "ask", conversation, text }));
    busy.add(conversation);
    setBusy(true);
    question.value = "";
    autoGrow();
  }

  // -- history -----------------------------------------------------------------------------

  async function api(method, path, body) {
    const options = { method, headers: API_HEADERS, credentials: "same-origin" };
    if (body !== undefined) options.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      return { error: "The bot can't be reached; check that it is running." };
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = {};
    }
    if (!response.ok) return { error: data.error || "The bot refused that request." };
    return data;
  }

  function clearLog() {
    bubbles.clear();
    for (const item of log.querySelectorAll(".message")) item.remove();
    welcome.hidden = false;
  }

  async function loadHistory() {
    const requested = conversation;
    const data = await api("GET", "/api/conversations/" + encodeURIComponent(requested));
    if (requested !== conversation) return;
    if (data.error) {
      showChatError(data.error);
      return;
    }
    clearLog();
    for (const entry of data.messages) {
      if (entry.role === "user") {
        addQuestion(entry.text);
      } else {
        const item = addBubble("assistant");
        fillAnswer(item, entry);
        if (entry.status === "done") addFeedback(item, entry.answer_id, entry.feedback);
      }
    }
    clearTimeout(pollTimer);
    if (data.answering && !busy.has(conversation)) {
      const item = addBubble("assistant");
      item.classList.add("streaming");
      item.querySelector(".body").textContent = "Still answering… it will appear here.";
      pollTimer = setTimeout(loadHistory, ANSWERING_POLL_MS);
    }
    scrollToEnd(true);
  }

  function startNewChat() {
    conversation = newConversationId();
    localStorage.setItem(STORAGE_KEY, conversation);
    clearTimeout(pollTimer);
    clearLog();
    showChatError("");
    setBusy(false);
    question.focus();
  }

  // -- the composer ------------------------------------------------------------------------

  function autoGrow() {
    question.style.height = "auto";
    question.style.height = question.scrollHeight + "px";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  question.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter while an IME is composing is not a send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  question.addEventListener("input", autoGrow);
  $("new-chat").addEventListener("click", startNewChat);

  // -- the first screen --------------------------------------------------------------------

  // Questions made from the documents' headings: a click asks one.
  async function loadSuggestions() {
    const data = await api("GET", "/api/suggestions");
    const questions = data.questions || [];
    $("suggestion-list").replaceChildren(
      ...questions.map((text) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button suggestion";
        button.textContent = text;
        button.addEventListener("click", () => {
          question.value = text;
          ask();
        });
        item.append(button);
        return item;
      }),
    );
    suggestions.hidden = questions.length === 0;
  }

  // Without any key the bot quotes passages only: say so at the top, with the way out.
  function showKeyBanner(data) {
    keyBanner.hidden = Boolean(data.error || data.last4 || data.server_key);
    keyBanner.dataset.checked = "true";
  }

  async function loadKeyBanner() {
    showKeyBanner(await api("GET", "/api/key"));
  }

  // -- settings ----------------------------------------------------------------------------

  function showKeyState(data) {
    if (data.last4) {
      keyStatus.textContent = "A key ending in …" + data.last4 + " is set.";
    } else if (data.server_key) {
      keyStatus.textContent = "No key set here; the server's own key is used.";
    } else {
      keyStatus.textContent = "No key set: answers are quoted passages only.";
    }
    $("remove-key").disabled = !data.last4;
    showKeyBanner(data);
  }

  function showKeyError(message) {
    keyError.textContent = message;
    keyError.hidden = !message;
    keyInput.setAttribute("aria-invalid", String(Boolean(message)));
  }

  $("open-settings").addEventListener("click", async () => {
    showKeyError("");
    keyStatus.textContent = "Checking…";
    settings.showModal();
    keyInput.focus();
    const data = await api("GET", "/api/key");
    if (data.error) showKeyError(data.error);
    else showKeyState(data);
  });
  $("close-settings").addEventListener("click", () => settings.close());
  $("banner-set-key").addEventListener("click", () => $("open-settings").click());

  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) {
      showKeyError("Paste an API key first.");
      keyInput.focus();
      return;
    }
    const save = $("save-key");
    save.disabled = true;
    save.textContent = "Checking…";
    const data = await api("POST", "/api/key", { key });
    save.disabled = false;
    save.textContent = "Save key";
    if (data.error) {
      showKeyError(data.error);
      keyInput.focus();
      return;
    }
    keyInput.value = "";
    showKeyError("");
    showKeyState(data);
  });

  $("remove-key").addEventListener("click", async () => {
    const data = await api("DELETE", "/api/key");
    if (data.error) showKeyError(data.error);
    else {
      showKeyError("");
      showKeyState(data);
    }
  });

  connect();
  loadHistory();
  loadSuggestions();
  loadKeyBanner();
  question.focus();
})();
