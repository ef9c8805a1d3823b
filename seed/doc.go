// Package seed fills a store with believable helpdesk data: Demo builds the
// small e-commerce helpdesk that `valet demo` serves, and Tickets bulk-loads
// the large ticket sets the benchmarks page through. Everything is
// deterministic (a fixed random seed), so two demo databases look alike and
// screenshots and benchmark runs can be compared.
package seed
