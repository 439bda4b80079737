// The pages' one script; each page works without it.
// - A "Copy" button under every setup snippet (snippets are plain text to select by hand).
// - A part marked `data-refresh="ms"` (a warm run under way on /admin) reloads the page after
//   that long, so the run's progress shows without a click.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const refreshing = document.querySelector("[data-refresh]");
  if (refreshing) {
    setTimeout(() => window.location.reload(), Number(refreshing.dataset.refresh) || 2000);
  }
  if (!navigator.clipboard) return;
  for (const pre of document.querySelectorAll("pre[data-copy]")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary copy";
    button.textContent = "Copy";
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.textContent);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy by hand";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    pre.after(button);
  }
});
