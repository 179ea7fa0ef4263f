// Package control is the harness's control API with its children: every
// call is a POST of a JSON request to /<verb> on loopback, answered with
// a JSON response or an HTTP error carrying the message. Server is a
// child's side, Client the harness's.
//
// Imported by scale-tests/internal/launch (a child serves it; the
// harness reaches each child through launch.Component.Control) and
// scale-tests/internal/roles (the verbs each role serves).
package control
