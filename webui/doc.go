// Package webui owns the web inbox's look: the html/template pages and the
// static CSS, JavaScript and icon, all embedded. Templates are parsed once by
// New, which fails if a page is missing. Each page has one typed render
// method that executes into a buffer and writes only when the template
// succeeded, so a template error becomes a clean 500 rather than half a page.
//
// The package knows nothing of sessions, stores or routing; server/ builds
// the page data and calls the render methods.
package webui
