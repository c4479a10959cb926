package main

import "strings"

// Problem is one thing wrong with one object.
type Problem struct {
	Source     string // file or kustomize directory, with the document
	Kind, Name string
	Field      string // path of the bad field, "" for the whole object
	Msg        string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Kind != "" || p.Name != "" {
		b.WriteString(": " + or(p.Kind, "?") + "/" + or(p.Name, "?"))
	}
	if p.Field != "" {
		b.WriteString(": " + p.Field)
	}
	b.WriteString(": " + p.Msg)
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
