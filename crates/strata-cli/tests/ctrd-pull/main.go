// ctrd-pull ADDRESS SNAPSHOTTER REF: pulls REF (plain HTTP) into containerd's namespace
// strata-test and unpacks it onto SNAPSHOTTER the way the CRI plugin and nerdctl do
// (containerd's client Pull with unpack, whose unpacker labels each layer's snapshot with
// containerd.io/snapshot.ref). ctr 1.6's `images pull` unpacks without that label.
// Prints the image's chain ID.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/opencontainers/image-spec/identity"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: ctrd-pull ADDRESS SNAPSHOTTER REF")
		os.Exit(2)
	}
	if err := pull(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "ctrd-pull:", err)
		os.Exit(1)
	}
}

func pull(address, snapshotter, ref string) error {
	client, err := containerd.New(address)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), "strata-test")
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter))
	if err != nil {
		return err
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return err
	}
	fmt.Println(identity.ChainID(diffIDs).String())
	return nil
}
