// Placeholder: the browser uploader module (issue 6).
