package stream

import "net"

// loopbackListen keeps every test broker on 127.0.0.1.
func loopbackListen(network, _ string) (net.Listener, error) {
	return net.Listen(network, "127.0.0.1:0")
}
