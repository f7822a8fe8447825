// Small progressive enhancements; every page works without this file.
// Controls that only work with JavaScript (Test Connection) are hidden until it runs.
document.documentElement.classList.add("js");
