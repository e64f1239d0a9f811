// Print buttons on the invoice page (the CSP allows no inline script). ?autoprint=1 prints at once,
// which the field agent's "print receipt" link uses.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
  if (document.body.hasAttribute("data-autoprint")) {
    window.print();
  }
});
