// Who is signed in, for every page.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Me } from './api';

export const Session = createContext<Me | null>(null);
export const useMe = () => useContext(Session)!;
export const canWrite = (me: Me) => me.role !== 'viewer';
