// Command k8scheck validates Kubernetes manifests the way the API server
// would read them, before any cluster sees them: every object of each
// kustomize build and each multi-document YAML file is decoded strictly into
// the k8s.io/api types (an unknown or duplicated field, a wrong type, a
// missing kind or apiVersion, or a kind that is not a built-in one is a
// problem), then checked for what the schema cannot say: names, selectors
// that match their pods, probes and mounts that point at what exists, and
// the hardening keyd's pods must have (see policy.go).
//
// Usage: k8scheck [-kustomize DIR]... [FILE.yaml]...
//
// It prints one line per problem, naming the file (or kustomize directory),
// the object's kind and name and the bad field, and exits 1 when there is
// any; otherwise one summary line and exit 0.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// dirs collects the repeated -kustomize flag.
type dirs []string

func (d *dirs) String() string     { return strings.Join(*d, ",") }
func (d *dirs) Set(v string) error { *d = append(*d, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("k8scheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var kdirs dirs
	fs.Var(&kdirs, "kustomize", "a kustomization directory to build and check (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: k8scheck [-kustomize DIR]... [FILE.yaml]...")
		fs.PrintDefaults()
	}
	// Files and -kustomize flags may come in any order.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(kdirs) == 0 && len(files) == 0 {
		fs.Usage()
		return 2
	}
	var problems []Problem
	objects := 0
	check := func(src string, docs []Document, err error) {
		if err != nil {
			problems = append(problems, Problem{Source: src, Msg: err.Error()})
			return
		}
		if len(docs) == 0 {
			problems = append(problems, Problem{Source: src, Msg: "no Kubernetes objects"})
			return
		}
		objects += len(docs)
		problems = append(problems, CheckDocuments(docs)...)
	}
	for _, d := range kdirs {
		docs, err := BuildKustomization(d)
		check(d, docs, err)
	}
	for _, f := range files {
		docs, err := ReadFile(f)
		check(f, docs, err)
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "k8scheck: %d problem(s) in %d object(s)\n", len(problems), objects)
		return 1
	}
	fmt.Fprintf(stdout, "k8scheck: %d objects valid in %s\n", objects, strings.Join(append(append([]string{}, kdirs...), files...), ", "))
	return 0
}
