// Command hello is a stand-in agent for initramfs tests.
package main

func main() { println("hello from /init") }
